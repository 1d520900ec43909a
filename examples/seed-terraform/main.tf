# A WebSocket chat on API Gateway: one Node.js function (functions/chat/index.js) behind the
# $connect, $disconnect and sendmessage routes, its connections in a DynamoDB table.
#
# On AWS: terraform init && terraform apply. On this machine, from the repository root:
#   python3 dev.py seed
# (a local DynamoDB, the table below, and `hubbub serve --config examples/seed-terraform/`;
# see README.md).

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.4"
    }
  }
}

variable "region" {
  type    = string
  default = "us-east-1"
}

provider "aws" {
  region = var.region
}

# ------------------------------------------------------------------------------ DynamoDB

resource "aws_dynamodb_table" "connections" {
  name         = "seed-chat-connections"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "connectionId"

  attribute {
    name = "connectionId"
    type = "S"
  }
}

# ------------------------------------------------------------------------------ Lambda

data "archive_file" "chat" {
  type        = "zip"
  source_dir  = "${path.module}/functions/chat"
  output_path = "${path.module}/build/chat.zip"
}

resource "aws_iam_role" "chat" {
  name = "seed-chat-lambda"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "chat_logs" {
  role       = aws_iam_role.chat.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
}

resource "aws_iam_role_policy" "chat" {
  name = "seed-chat"
  role = aws_iam_role.chat.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"]
        Resource = aws_dynamodb_table.connections.arn
      },
      {
        Effect   = "Allow"
        Action   = "execute-api:ManageConnections"
        Resource = "${aws_apigatewayv2_api.chat.execution_arn}/*"
      },
    ]
  })
}

resource "aws_lambda_function" "chat" {
  function_name    = "seed-chat"
  filename         = data.archive_file.chat.output_path
  source_code_hash = data.archive_file.chat.output_base64sha256
  role             = aws_iam_role.chat.arn
  handler          = "index.handler"
  runtime          = "nodejs20.x"
  timeout          = 10
  memory_size      = 256

  environment {
    variables = {
      CONNECTIONS_TABLE  = aws_dynamodb_table.connections.name
      WEBSOCKET_ENDPOINT = "${aws_apigatewayv2_api.chat.id}.execute-api.${var.region}.amazonaws.com/${aws_apigatewayv2_stage.production.name}"
    }
  }
}

resource "aws_lambda_permission" "chat" {
  statement_id  = "AllowExecutionFromAPIGateway"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.chat.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.chat.execution_arn}/*/*"
}

# ------------------------------------------------------------------------------ API Gateway

resource "aws_apigatewayv2_api" "chat" {
  name                       = "seed-chat"
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"
}

resource "aws_apigatewayv2_integration" "chat" {
  api_id                    = aws_apigatewayv2_api.chat.id
  integration_type          = "AWS_PROXY"
  integration_uri           = aws_lambda_function.chat.invoke_arn
  integration_method        = "POST"
  content_handling_strategy = "CONVERT_TO_TEXT"
  passthrough_behavior      = "WHEN_NO_MATCH"
}

resource "aws_apigatewayv2_route" "connect" {
  api_id    = aws_apigatewayv2_api.chat.id
  route_key = "$connect"
  target    = "integrations/${aws_apigatewayv2_integration.chat.id}"
}

resource "aws_apigatewayv2_route" "disconnect" {
  api_id    = aws_apigatewayv2_api.chat.id
  route_key = "$disconnect"
  target    = "integrations/${aws_apigatewayv2_integration.chat.id}"
}

resource "aws_apigatewayv2_route" "sendmessage" {
  api_id    = aws_apigatewayv2_api.chat.id
  route_key = "sendmessage"
  target    = "integrations/${aws_apigatewayv2_integration.chat.id}"
}

resource "aws_apigatewayv2_stage" "production" {
  api_id      = aws_apigatewayv2_api.chat.id
  name        = "production"
  auto_deploy = true
}

output "websocket_url" {
  value = aws_apigatewayv2_stage.production.invoke_url
}
