"""Read an AWS WebSocket API from its own infrastructure files (SAM/CloudFormation/CDK,
serverless.yml, Terraform) into one format-neutral model (:mod:`hubbub.infra.model`)."""
