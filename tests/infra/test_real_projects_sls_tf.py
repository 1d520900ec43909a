"""Real serverless.yml and Terraform projects (tests/infra/fixtures), read into the model and
served from their own files with create_tables against a local DynamoDB."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import boto3
import pytest
import websockets

from hubbub.config import load_config
from hubbub.infra import serverless, terraform
from hubbub.infra.model import InfraError, ReadOptions
from hubbub.testing import run_gateway
from tests.helpers import eventually

FIXTURES = Path(__file__).parent / "fixtures"
NOCO = FIXTURES / "noco-serverless-chat" / "serverless"


def test_noco_serverless_chat_reads_into_the_model() -> None:
    # Its provider reads ${env:AWS_REGION} and ${env:ENV} (the stage), as its Makefile sets them.
    api = serverless.read(
        NOCO / "serverless.yml", ReadOptions(env={"AWS_REGION": "us-west-2", "ENV": "bz"})
    )
    assert (api.format, api.name, api.stage, api.region) == (
        "serverless",
        "bz-noco-sls-chat-websockets",
        "bz",
        "us-west-2",
    )
    assert {r.key: r.integration.function for r in api.routes} == {
        "$connect": "connect",
        "$disconnect": "disconnect",
        "command": "command",
        "$default": "default",
    }
    handlers = {name: f.handler for name, f in api.functions.items()}
    assert handlers == {
        "connect": "handler.connect",
        "disconnect": "handler.disconnect",
        "command": "handler.handle_cmd",
        "default": "handler.default",
    }
    for function in api.functions.values():
        assert function.code_root == NOCO.resolve()
        assert function.runtime == "python3.6"
        assert function.timeout == 6.0
        # DYNAMO_TABLE_NAME: !Ref ConnectionsTable, a table without a TableName.
        assert function.environment == {"DYNAMO_TABLE_NAME": "noco-sls-chat-bz-ConnectionsTable"}
    (table,) = api.tables
    assert table.name == "noco-sls-chat-bz-ConnectionsTable"
    assert table.key_schema == (("pk", "HASH"), ("epoch", "RANGE"))
    assert table.attributes == {"pk": "S", "epoch": "N"}
    # Each function lists a published boto3 layer by ARN: its code is not in the project.
    assert api.ignored == {"layer ARN": 4}


SLS_OPTIONS = 'stage = "local"\nvars = { region = "us-west-2" }'


def _hubbub_toml(tmp_path: Path, source: Path, dynamodb: str, options: str = SLS_OPTIONS) -> Path:
    config = tmp_path / "hubbub.toml"
    config.write_text(
        f"""
[import]
from = {json.dumps(str(source))}
{options}
create_tables = true

[server]
port = 0

[management]
port = 0
tls_port = 0
state_dir = {json.dumps(str(tmp_path / "state"))}

[environment]
AWS_ENDPOINT_URL_DYNAMODB = "{dynamodb}"
""",
        encoding="utf-8",
    )
    return config


def _items(dynamodb: str, table: str, region: str = "us-west-2") -> list[dict[str, object]]:
    # moto keeps tables per region, as DynamoDB does: the API's region (where they are created).
    client = boto3.client("dynamodb", endpoint_url=dynamodb, region_name=region)
    return list(client.scan(TableName=table)["Items"])


async def test_noco_serverless_chat_two_clients_chat(tmp_path: Path, dynamodb: str) -> None:
    """Its own handlers, unchanged: $connect writes the channel's connection map in DynamoDB,
    $default (plain text, no "action") saves the message and posts it to the channel's other
    connections with boto3's post_to_connection at https://{domainName}/{stage}."""
    config = load_config(_hubbub_toml(tmp_path, NOCO / "serverless.yml", dynamodb), env={})
    assert config.imported is not None
    assert config.imported.format == "serverless"
    assert config.imported.summary == "ignored: 4 layer ARN"
    table = "noco-sls-chat-local-ConnectionsTable"
    async with run_gateway(config) as gw:
        assert _items(dynamodb, table) == []
        alice = await websockets.connect(gw.websocket_url)
        bob = await websockets.connect(gw.websocket_url)

        def connected() -> int:
            rows = [r for r in _items(dynamodb, table) if r["pk"] == {"S": "general:::connections"}]
            return sum(1 for key in rows[0] if key.startswith("CONN")) if rows else 0

        await eventually(lambda: connected() == 2, message="2 connections in #general")
        await alice.send("/name alice")
        assert await asyncio.wait_for(alice.recv(), 10) == "Set username to alice"
        await alice.send("hello bob")
        assert await asyncio.wait_for(bob.recv(), 10) == "#general alice: hello bob"
        await bob.send("hi alice")
        assert await asyncio.wait_for(alice.recv(), 10) == "#general anonymous: hi alice"
        # The messages themselves, saved by handler.default in the project's own table.
        saved = {r["message"]["S"] for r in _items(dynamodb, table) if "message" in r}  # type: ignore[index]
        assert saved == {"hello bob", "hi alice"}
        await bob.close()
        await eventually(lambda: connected() == 1, message="$disconnect removed bob")
        await alice.close()


async def test_noco_serverless_chat_command_route(tmp_path: Path, dynamodb: str) -> None:
    """A message whose "action" is "command" goes to its own function (handler.handle_cmd)."""
    config = load_config(_hubbub_toml(tmp_path, NOCO / "serverless.yml", dynamodb), env={})
    async with run_gateway(config) as gw:
        client = await websockets.connect(gw.websocket_url)
        await client.send(json.dumps({"action": "command", "data": "fetchChannels"}))
        assert json.loads(await asyncio.wait_for(client.recv(), 10)) == {
            "channelsList": ["general"]
        }
        await client.close()


TF_CHAT = FIXTURES / "terraform-websocket-chat-app"
TF_SQS = FIXTURES / "apigw-websocket-api-sqs-lambda-terraform"


def test_terraform_chat_app_reads_into_the_model() -> None:
    """hashicorp/terraform-provider-aws's WebSocket chat example: three functions whose code is
    one app.js each in its own folder (archive_file source_file), one table, IAM ignored."""
    api = terraform.read(TF_CHAT, ReadOptions())
    assert (api.format, api.name, api.stage, api.region) == (
        "terraform",
        "SimpleChatWebSocket",
        "Prod",
        "us-west-2",  # var.aws_region's default, through provider "aws" { region = ... }
    )
    assert api.route_selection_expression == "$request.body.message"
    assert {r.key: r.integration.function for r in api.routes} == {
        "$connect": "OnConnectFunction",
        "$disconnect": "OnDisconnectFunction",
        "sendmessage": "SendMessageFunction",
    }
    roots = {name: f.code_root for name, f in api.functions.items()}
    assert roots == {
        "OnConnectFunction": (TF_CHAT / "onconnect").resolve(),
        "OnDisconnectFunction": (TF_CHAT / "ondisconnect").resolve(),
        "SendMessageFunction": (TF_CHAT / "sendmessage").resolve(),
    }
    for function in api.functions.values():
        assert (function.handler, function.runtime, function.memory_mb) == (
            "app.handler",
            "nodejs12.x",
            256,
        )
        assert function.environment == {"TABLE_NAME": "simplechat_connections"}
    (table,) = api.tables
    assert (table.name, table.key_schema, table.attributes) == (
        "simplechat_connections",
        (("connectionId", "HASH"),),
        {"connectionId": "S"},
    )
    assert api.ignored == {
        "aws_iam_role_policy_attachment": 7,
        "aws_iam_policy": 5,
        "aws_iam_role": 3,
        "aws_lambda_permission": 3,
        "aws_apigatewayv2_deployment": 1,
    }


def test_terraform_chat_app_tfvars_and_vars_pick_the_region(tmp_path: Path) -> None:
    template = TF_CHAT / "terraform.template.tfvars"
    assert terraform.read(TF_CHAT, ReadOptions(var_files=(template,))).region == "us-east-1"
    options = ReadOptions(var_files=(template,), vars={"aws_region": "eu-north-1"})
    assert terraform.read(TF_CHAT, options).region == "eu-north-1"


def test_terraform_sqs_pattern_is_a_clear_error() -> None:
    """aws-samples/serverless-patterns' WebSocket → SQS → Lambda: its only route is an AWS service
    integration, which the error names with the file, line and expression."""
    with pytest.raises(InfraError) as caught:
        terraform.read(TF_SQS, ReadOptions())
    assert caught.value.origin.file == (TF_SQS / "main.tf").resolve()
    assert caught.value.origin.line == 57
    assert caught.value.expression == (
        'integration_uri = "arn:aws:apigateway:us-east-1:sqs:path/123456789012/'
        'tf-APIGWWebsocketQueue.fifo"'
    )
    assert "an AWS service integration (sqs) can't run locally" in str(caught.value)


# A Terraform project written for this test (no third-party Terraform project with Python
# handlers and a licence was found): it builds its management endpoint the way templates do,
# from the API id, the region data source and the stage.
TF_PROJECT = """\
variable "stage" {
  default = "dev"
}
provider "aws" {
  region = "eu-west-1"
}
data "aws_region" "current" {}
locals {
  name = "tfchat-${var.stage}"
}
resource "aws_dynamodb_table" "connections" {
  name         = "${local.name}-connections"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "connectionId"
  attribute {
    name = "connectionId"
    type = "S"
  }
}
resource "aws_apigatewayv2_api" "ws" {
  name                       = local.name
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"
}
resource "aws_apigatewayv2_stage" "stage" {
  api_id      = aws_apigatewayv2_api.ws.id
  name        = var.stage
  auto_deploy = true
}
data "archive_file" "code" {
  type        = "zip"
  source_dir  = "${path.module}/src"
  output_path = "${path.module}/build/chat.zip"
}
resource "aws_lambda_function" "chat" {
  function_name = "${local.name}-chat"
  filename      = data.archive_file.code.output_path
  handler       = "chat.handler"
  runtime       = "python3.12"
  environment {
    variables = {
      TABLE    = aws_dynamodb_table.connections.name
      ENDPOINT = "https://${aws_apigatewayv2_api.ws.id}.execute-api.${data.aws_region.current.name}.amazonaws.com/${aws_apigatewayv2_stage.stage.name}"
    }
  }
}
resource "aws_apigatewayv2_integration" "chat" {
  api_id           = aws_apigatewayv2_api.ws.id
  integration_type = "AWS_PROXY"
  integration_uri  = aws_lambda_function.chat.invoke_arn
}
resource "aws_apigatewayv2_route" "routes" {
  for_each  = toset(["$connect"])
  api_id    = aws_apigatewayv2_api.ws.id
  route_key = each.key
  target    = "integrations/${aws_apigatewayv2_integration.chat.id}"
}
resource "aws_apigatewayv2_route" "disconnect" {
  api_id    = aws_apigatewayv2_api.ws.id
  route_key = "$disconnect"
  target    = "integrations/${aws_apigatewayv2_integration.chat.id}"
}
resource "aws_apigatewayv2_route" "send" {
  api_id    = aws_apigatewayv2_api.ws.id
  route_key = "sendmessage"
  target    = "integrations/${aws_apigatewayv2_integration.chat.id}"
}
resource "aws_lambda_permission" "invoke" {
  function_name = aws_lambda_function.chat.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.ws.execution_arn}/*"
}
"""

TF_HANDLER = """\
import json
import os

import boto3

table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
api = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["ENDPOINT"])


def handler(event, context):
    route = event["requestContext"]["routeKey"]
    me = event["requestContext"]["connectionId"]
    if route == "$connect":
        table.put_item(Item={"connectionId": me})
    elif route == "$disconnect":
        table.delete_item(Key={"connectionId": me})
    else:
        text = json.loads(event["body"])["text"]
        for item in table.scan()["Items"]:
            if item["connectionId"] != me:
                api.post_to_connection(ConnectionId=item["connectionId"], Data=text.encode())
    return {"statusCode": 200}
"""


async def test_terraform_project_two_clients_chat(tmp_path: Path, dynamodb: str) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "main.tf").write_text(TF_PROJECT)
    (project / "src" / "chat.py").write_text(TF_HANDLER)
    # -var stage=local, as `terraform apply -var stage=local` would.
    config = load_config(
        _hubbub_toml(tmp_path, project, dynamodb, 'vars = { stage = "local" }'), env={}
    )
    assert config.imported is not None
    assert config.imported.format == "terraform"
    assert config.imported.summary == "ignored: 1 aws_lambda_permission"
    # ENDPOINT, built in main.tf from the API id, the region and the stage, is one of hubbub's
    # aliases: boto3 reaches the management API with it unchanged.
    endpoint = config.routes["sendmessage"].environment["ENDPOINT"]
    assert endpoint == "https://tfchat-local.execute-api.eu-west-1.amazonaws.com/local"
    assert "tfchat-local.execute-api.eu-west-1.amazonaws.com" in config.api.aliases
    table = "tfchat-local-connections"

    def rows() -> int:
        return len(_items(dynamodb, table, "eu-west-1"))

    async with run_gateway(config) as gw:
        assert rows() == 0
        alice = await websockets.connect(gw.websocket_url)
        bob = await websockets.connect(gw.websocket_url)
        await eventually(lambda: rows() == 2, message="2 connections")
        await alice.send(json.dumps({"action": "sendmessage", "text": "hello bob"}))
        assert await asyncio.wait_for(bob.recv(), 10) == "hello bob"
        await bob.send(json.dumps({"action": "sendmessage", "text": "hi alice"}))
        assert await asyncio.wait_for(alice.recv(), 10) == "hi alice"
        await bob.close()
        await eventually(lambda: rows() == 1, message="$disconnect")
        await alice.close()


SLS_AUTH_PROJECT = """\
service: authchat
provider:
  name: aws
  runtime: python3.12
  environment:
    SECRET: ${opt:secret, 'letmein'}
functions:
  auth:
    handler: handlers/auth.handler
  connect:
    handler: handlers/connect.handler
    events:
      - websocket:
          route: $connect
          authorizer:
            name: auth
            identitySource:
              - route.request.querystring.token
  echo:
    handler: handlers/echo.handler
    events:
      - websocket:
          route: $default
          routeResponseSelectionExpression: $default
"""

SLS_AUTH = """\
import os


def handler(event, context):
    allowed = event["queryStringParameters"]["token"] == os.environ["SECRET"]
    return {
        "principalId": "user-1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allowed else "Deny",
                    "Resource": event["methodArn"],
                }
            ],
        },
        "context": {"who": "user-1"},
    }
"""

SLS_ECHO = """\
def handler(event, context):
    who = event["requestContext"]["authorizer"]["who"]
    return {"statusCode": 200, "body": who + ": " + event["body"]}
"""


async def test_serverless_request_authorizer_guards_connect(tmp_path: Path) -> None:
    """A serverless.yml websocket authorizer (a function of the service, its identitySource)
    runs before $connect: a wrong token is refused, the right one connects, and the route sees
    the authorizer's context; routeResponseSelectionExpression sends its answer back."""
    project = tmp_path / "project"
    (project / "handlers").mkdir(parents=True)
    (project / "serverless.yml").write_text(SLS_AUTH_PROJECT)
    (project / "handlers" / "auth.py").write_text(SLS_AUTH)
    (project / "handlers" / "connect.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200}\n"
    )
    (project / "handlers" / "echo.py").write_text(SLS_ECHO)
    config = tmp_path / "hubbub.toml"
    config.write_text(
        f"""
[import]
from = {json.dumps(str(project / "serverless.yml"))}
vars = {{ secret = "s3cret" }}

[server]
port = 0

[management]
port = 0
tls_port = 0
state_dir = {json.dumps(str(tmp_path / "state"))}
""",
        encoding="utf-8",
    )
    loaded = load_config(config, env={})
    assert loaded.authorizer is not None
    async with run_gateway(loaded) as gw:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{gw.websocket_url}?token=letmein")
        assert refused.value.response.status_code == 403
        client = await websockets.connect(f"{gw.websocket_url}?token=s3cret")
        await client.send("hello")
        assert await asyncio.wait_for(client.recv(), 10) == "user-1: hello"
        await client.close()
