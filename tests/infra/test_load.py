"""From an imported API to hubbub's config: [import], precedence, MOCK routes, `hubbub import`,
serve/check --config of a template, format detection, and the execute-api URLs handlers use."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import websockets

from hubbub.cli import main
from hubbub.config import load_config
from hubbub.errors import ConfigError
from hubbub.infra.detect import detect
from hubbub.infra.model import InfraError
from hubbub.testing import run_gateway

TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  TableName:
    Type: String
    Default: connections
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: notes
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Api
      StageName: live
      StageVariables:
        color: blue
  PostRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: post
      Target: !Sub integrations/${PostInteg}
  PostInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt PostFunction.Arn
  EchoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: echo
      Target: !Sub integrations/${EchoInteg}
  EchoInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: MOCK
  PostFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: post/
      Handler: app.handler
      Runtime: python3.12
      Timeout: 5
      Environment:
        Variables:
          TABLE: !Ref TableName
          ENDPOINT: !Sub https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}
  Queue:
    Type: AWS::SQS::Queue
"""

ECHO_LINE = TEMPLATE.splitlines().index("  EchoInteg:") + 1

# Posts to the management endpoint the template built, as many handlers do (boto3 endpoint_url).
POST_HANDLER = """\
import json
import os

import boto3

client = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["ENDPOINT"])


def handler(event, context):
    client.post_to_connection(
        ConnectionId=event["requestContext"]["connectionId"],
        Data=json.dumps({"table": os.environ["TABLE"], "endpoint": os.environ["ENDPOINT"]}),
    )
    return {"statusCode": 200}
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "post").mkdir()
    (tmp_path / "post" / "app.py").write_text(POST_HANDLER)
    (tmp_path / "echo.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200, 'body': event['body']}\n"
    )
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)
    return template


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hubbub.toml"
    path.write_text(textwrap.dedent(text))
    return path


LOCAL = """
[server]
port = 0
[management]
port = 0
tls_port = 0
state_dir = "state"
"""


def test_a_template_as_config_needs_its_mock_route_overridden(tmp_path: Path) -> None:
    template = _project(tmp_path)
    with pytest.raises(InfraError) as caught:
        load_config(template, env={})
    message = str(caught.value)
    assert "route echo: MOCK integration: hubbub has no mock integrations" in message
    assert '[routes."echo"] handler = "module.function"' in message
    assert caught.value.origin.line == ECHO_LINE  # the integration's line in template.yaml


def test_import_section_keys_win_and_mock_routes_get_a_handler(tmp_path: Path) -> None:
    _project(tmp_path)
    config_file = _toml(
        tmp_path,
        """
        [import]
        from = "template.yaml"
        stage = "test"
        parameters = { TableName = "notes_local" }

        [environment]
        ENDPOINT = "https://example.invalid/override"

        [routes.post]
        timeout = 2.5

        [routes.echo]
        handler = "echo.handler"
        route_response = true
        """
        + LOCAL,
    )
    config = load_config(config_file, env={})
    post = config.routes["post"]
    assert post.handler == "app.handler"
    assert post.timeout == 2.5  # the hubbub.toml's key wins over the template's Timeout: 5
    assert post.function is not None
    assert post.function.code == (tmp_path / "post").resolve()
    assert post.environment["TABLE"] == "notes_local"  # --parameter / parameters
    assert "ENDPOINT" not in post.environment  # [environment] of the hubbub.toml wins
    assert config.environment["ENDPOINT"] == "https://example.invalid/override"
    assert config.routes["echo"].handler == "echo.handler"
    assert config.routes["echo"].function is None  # the hubbub.toml's own handler
    assert config.api.stage == "test"
    assert config.api.name == "notes"
    assert config.imported is not None
    assert config.imported.summary == "ignored: 1 AWS::SQS::Queue"
    # HUBBUB_* variables keep their precedence over both.
    env_config = load_config(config_file, env={"HUBBUB_API_STAGE": "fromenv"})
    assert env_config.api.stage == "fromenv"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('from = "template.yaml"\nformat = "sam"', "import.format: unknown key"),
        ("stage = 'x'", "import.from: names the template"),
        ('from = "missing.yaml"', "import.from: "),
        ('from = "template.yaml"\ncreate_tables = "yes"', "import.create_tables: must be true"),
        ('from = "template.yaml"\nparameters = "x"', "import.parameters: must be a table"),
        ('from = "template.yaml"\nvar_files = "a.tfvars"', "import.var_files: must be a list"),
    ],
)
def test_import_section_errors(tmp_path: Path, section: str, message: str) -> None:
    _project(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(_toml(tmp_path, f"[import]\n{section}\n"), env={})
    assert message in str(caught.value)


def test_create_tables_needs_a_local_endpoint(tmp_path: Path) -> None:
    from hubbub.infra.tables import create_tables

    _project(tmp_path)
    config_file = _toml(
        tmp_path,
        '[import]\nfrom = "template.yaml"\ncreate_tables = true\n'
        '[routes.echo]\nhandler = "echo.handler"\n',
    )
    with pytest.raises(ConfigError, match=r"import\.create_tables: needs the local DynamoDB"):
        create_tables(load_config(config_file, env={}))


async def test_execute_api_urls_from_the_template_reach_hubbub(tmp_path: Path) -> None:
    """ENDPOINT is https://{apiId}.execute-api.us-east-1.amazonaws.com/live, built by the
    template: the handler's boto3 client posts there and reaches this gateway in-process."""
    _project(tmp_path)
    config_file = _toml(
        tmp_path,
        '[import]\nfrom = "template.yaml"\n[routes.echo]\nhandler = "echo.handler"\n' + LOCAL,
    )
    config = load_config(config_file, env={})
    async with run_gateway(config) as gw:
        ws = await websockets.connect(gw.websocket_url)
        await ws.send(json.dumps({"action": "post"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.close()
    from hubbub.aws.ids import api_id_for

    assert config.api.stage_variables == {"color": "blue"}
    assert reply == {
        "table": "connections",
        "endpoint": f"https://{api_id_for('notes')}.execute-api.us-east-1.amazonaws.com/live",
    }


def test_hubbub_import_prints_an_equivalent_hubbub_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["import", "template.yaml", "--parameter", "TableName=t2", "--stage", "s"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == "hubbub: ignored: 1 AWS::SQS::Queue"
    assert "# route: template.yaml:" in out
    assert f"# echo: a MOCK integration (template.yaml:{ECHO_LINE} " in out
    raw = tomllib.loads(out)
    assert raw["api"]["stage"] == "s"
    assert raw["api"]["stage_variables"] == {"color": "blue"}
    assert raw["routes"]["post"]["code"] == "post"
    assert raw["routes"]["post"]["environment"]["TABLE"] == "t2"
    # The template's URL names the stage served: --stage renamed the template's one stage.
    assert raw["routes"]["post"]["environment"]["ENDPOINT"].endswith(".amazonaws.com/s")
    # Saved next to the template, with the MOCK route given a handler, it is a working config.
    (tmp_path / "hubbub.toml").write_text(out + '\n[routes.echo]\nhandler = "echo.handler"\n')
    config = load_config(tmp_path / "hubbub.toml", env={})
    assert config.routes["post"].function is not None
    assert config.routes["post"].function.code == tmp_path / "post"


def test_hubbub_check_and_import_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["import", "template.yaml", "--parameter", "Nope=1"]) == 2
    assert "the template has no parameter 'Nope'" in capsys.readouterr().err
    assert main(["import", "template.yaml", "--parameter", "novalue"]) == 2
    assert "--parameter: must look like KEY=VALUE" in capsys.readouterr().err
    assert main(["check", "--config", "template.yaml"]) == 2  # the MOCK route
    assert "MOCK integration" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["check", "--config", "notes.txt"]) == 2
    assert "pass --format sam|cloudformation|serverless|terraform" in capsys.readouterr().err


def test_hubbub_check_of_a_template(tmp_path: Path) -> None:
    """The real command line: `hubbub check --config template` prints the summary line first."""
    template = _project(tmp_path)
    template.write_text(
        TEMPLATE.replace(
            "IntegrationType: MOCK",
            "IntegrationType: HTTP_PROXY\n      IntegrationUri: http://127.0.0.1:9/echo",
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "hubbub.cli", "check", "--config", str(template)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"hubbub: imported {template} (sam); ignored: 1 AWS::SQS::Queue"
    )
    assert "post" in result.stdout
    assert "echo" in result.stdout


def test_detect(tmp_path: Path) -> None:
    template = _project(tmp_path)
    assert detect(template) == "sam"
    cfn = tmp_path / "cfn.yaml"
    cfn.write_text("AWSTemplateFormatVersion: '2010-09-09'\nResources: {}\n")
    assert detect(cfn) == "cloudformation"
    cdk = tmp_path / "Stack.template.json"
    cdk.write_text('{"Resources": {}}')
    assert detect(cdk) == "cloudformation"
    (tmp_path / "serverless.yml").write_text("service: x\n")
    assert detect(tmp_path / "serverless.yml") == "serverless"
    tf = tmp_path / "tf"
    tf.mkdir()
    (tf / "main.tf").write_text("")
    assert detect(tf) == "terraform"
    assert detect(tf / "main.tf") == "terraform"
    assert detect(cfn, "terraform") == "terraform"  # --format wins
    with pytest.raises(InfraError, match="unknown format"):
        detect(cfn, "pulumi")
    with pytest.raises(InfraError, match="no such file"):
        detect(tmp_path / "missing.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InfraError, match=r"holds no \.tf files"):
        detect(empty)


def test_a_toml_file_of_another_name_is_still_a_hubbub_toml(tmp_path: Path) -> None:
    config = tmp_path / "gateway.conf"
    config.write_text('[api]\nname = "plain"\n')
    assert load_config(config, env={}).api.name == "plain"
    assert load_config(config, env={}).imported is None


def test_a_missing_reader_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from hubbub.infra import detect as detect_module

    monkeypatch.setitem(detect_module._READERS, "terraform", "hubbub.infra.not_there")
    with pytest.raises(InfraError, match=r"this hubbub has no terraform reader"):
        detect_module.reader("terraform")


def test_a_request_authorizer_from_the_template(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "authorize.py").write_text("def handler(event, context):\n    pass\n")
    template = tmp_path / "template.yaml"
    text = template.read_text().replace(
        "IntegrationType: MOCK",
        "IntegrationType: HTTP_PROXY\n      IntegrationUri: http://127.0.0.1:9/echo",
    )
    text += (
        "  ConnectRoute:\n"
        "    Type: AWS::ApiGatewayV2::Route\n"
        "    Properties:\n"
        "      ApiId: !Ref Api\n"
        "      RouteKey: $connect\n"
        "      AuthorizationType: CUSTOM\n"
        "      AuthorizerId: !Ref Auth\n"
        "      Target: !Sub integrations/${PostInteg}\n"
        "  Auth:\n"
        "    Type: AWS::ApiGatewayV2::Authorizer\n"
        "    Properties:\n"
        "      ApiId: !Ref Api\n"
        "      Name: auth\n"
        "      AuthorizerType: REQUEST\n"
        "      AuthorizerUri: !GetAtt AuthFn.Arn\n"
        "      IdentitySource: [route.request.querystring.token]\n"
        "  AuthFn:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      CodeUri: auth/\n"
        "      Handler: authorize.handler\n"
        "      Runtime: python3.12\n"
        "      Timeout: 3\n"
        "      Environment:\n"
        "        Variables:\n"
        "          SECRET: s3cret\n"
    )
    template.write_text(text)
    auth = load_config(template, env={}).authorizer
    assert auth is not None
    assert auth.handler == "authorize.handler"
    assert auth.identity_source == ("route.request.querystring.token",)
    assert auth.timeout == 3
    assert auth.environment == {"SECRET": "s3cret"}
    assert auth.function is not None
    assert auth.function.code == (tmp_path / "auth").resolve()
    assert auth.function.name == "AuthFn"


def test_import_flags_without_an_imported_file_are_an_error(tmp_path: Path) -> None:
    config = _toml(tmp_path, '[api]\nname = "plain"\n')
    with pytest.raises(ConfigError, match=r"--stage: applies to an imported file"):
        load_config(config, env={}, import_options={"stage": "x"})
    with pytest.raises(ConfigError, match=r"--parameter: applies to an imported file"):
        load_config(config, env={}, import_options={"parameters": {"A": "1"}})


def test_format_flag_applies_to_the_imported_file(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "api.cfn").write_text((tmp_path / "template.yaml").read_text())
    config_file = _toml(
        tmp_path, '[import]\nfrom = "api.cfn"\n[routes.echo]\nhandler = "echo.handler"\n'
    )
    config = load_config(config_file, env={}, import_options={"format": "cloudformation"})
    assert config.imported is not None
    assert config.imported.format == "sam"  # the reader still tells SAM from CloudFormation
    with pytest.raises(ConfigError, match=r"--format: applies to an imported file"):
        load_config(_toml(tmp_path, "[api]\n"), env={}, import_options={"format": "sam"})
