"""The serverless.yml reader: every variable form, the intrinsics it evaluates, every error."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.infra import serverless
from hubbub.infra.model import ImportedApi, InfraError, ReadOptions
from hubbub.infra.serverless_variables import Context

BASE = """\
service: chat
provider:
  name: aws
  runtime: python3.12
functions:
  connect:
    handler: src/connect.handler
    events:
      - websocket: $connect
"""


def read(tmp_path: Path, text: str, **options: object) -> ImportedApi:
    (tmp_path / "serverless.yml").write_text(textwrap.dedent(text))
    return serverless.read(tmp_path / "serverless.yml", ReadOptions(**options))  # type: ignore[arg-type]


def error(tmp_path: Path, text: str, **options: object) -> InfraError:
    with pytest.raises(InfraError) as caught:
        read(tmp_path, text, **options)
    return caught.value


def env(api: ImportedApi, function: str = "connect") -> dict[str, str]:
    return api.functions[function].environment


def test_websocket_events_become_routes_of_their_functions(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        service: chat
        provider:
          name: aws
          runtime: python3.11
          websocketsApiName: chat-api
          websocketsApiRouteSelectionExpression: $request.body.type
        functions:
          connect:
            handler: handlers/connect.handler
            events:
              - websocket: $connect
              - websocket:
                  route: $disconnect
          send:
            handler: handlers/send.handler
            runtime: python3.12
            events:
              - websocket:
                  route: sendMessage
                  routeResponseSelectionExpression: $default
        """,
    )
    assert api.format == "serverless"
    assert api.name == "chat-api"
    assert api.route_selection_expression == "$request.body.type"
    assert {r.key: r.integration.function for r in api.routes} == {
        "$connect": "connect",
        "$disconnect": "connect",
        "sendMessage": "send",
    }
    assert [r.route_response for r in api.routes] == [False, False, True]
    assert api.functions["connect"].handler == "handlers/connect.handler"
    assert api.functions["connect"].code_root == tmp_path.resolve()
    assert api.functions["connect"].runtime == "python3.11"
    assert api.functions["send"].runtime == "python3.12"
    assert [r.origin.line for r in api.routes] == [12, 13, 19]


def test_defaults_are_serverless_own(tmp_path: Path) -> None:
    api = read(tmp_path, BASE)
    assert api.name == "dev-chat-websockets"
    assert api.route_selection_expression == "$request.body.action"
    assert api.stage == "dev"
    assert api.region == "us-east-1"
    assert api.functions["connect"].timeout == 6.0
    assert api.functions["connect"].memory_mb == 1024


def test_provider_settings_and_function_overrides(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        service: chat
        provider:
          name: aws
          runtime: python3.12
          stage: prod
          region: eu-west-1
          timeout: 10
          memorySize: 256
          environment:
            SHARED: one
            LEVEL: 3
        functions:
          connect:
            handler: app.handler
            timeout: 29
            environment:
              LEVEL: 4
              DEBUG: true
            events:
              - websocket: $connect
        """,
    )
    assert (api.stage, api.region) == ("prod", "eu-west-1")
    function = api.functions["connect"]
    assert (function.timeout, function.memory_mb) == (29.0, 256)
    assert function.environment == {"SHARED": "one", "LEVEL": "4", "DEBUG": "true"}


def test_function_name_property_names_the_function(tmp_path: Path) -> None:
    api = read(tmp_path, BASE.replace("    handler:", "    name: chat-connect\n    handler:"))
    assert list(api.functions) == ["chat-connect"]
    assert api.routes[0].integration.function == "chat-connect"


def test_stage_option_wins_over_provider_stage(tmp_path: Path) -> None:
    text = BASE.replace("  runtime: python3.12", "  runtime: python3.12\n  stage: qa")
    assert read(tmp_path, text).stage == "qa"
    assert read(tmp_path, text, stage="prod").stage == "prod"
    assert read(tmp_path, text, vars={"stage": "test"}).stage == "test"


def test_self_opt_sls_env_and_aws_variables(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        service: chat
        custom:
          table: ${self:service}-${sls:stage}-connections
          sizes: {dev: 128, prod: 512}
        provider:
          name: aws
          runtime: python3.12
          stage: ${opt:stage, 'dev'}
          region: ${opt:region, "eu-central-1"}
          memorySize: ${self:custom.sizes.${sls:stage}}
          environment:
            TABLE: ${self:custom.table}
            STAGE: ${self:provider.stage}
            HOME_DIR: ${env:HOME_DIR}
            MISSING_ENV: ${env:NOT_SET, 'fallback'}
            REGION: ${aws:region}
            ACCOUNT: ${aws:accountId}
            LEVEL: ${opt:level, ${self:custom.sizes.dev}}
            BARE: ${opt:nothing, plain}
        functions:
          connect:
            handler: app.handler
            events:
              - websocket: $connect
        """,
        stage="prod",
        env={"HOME_DIR": "/home/x"},
    )
    assert api.stage == "prod"
    assert api.region == "eu-central-1"
    assert api.functions["connect"].memory_mb == 512
    assert env(api) == {
        "TABLE": "chat-prod-connections",
        "STAGE": "prod",
        "HOME_DIR": "/home/x",
        "MISSING_ENV": "fallback",
        "REGION": "eu-central-1",
        "ACCOUNT": "123456789012",
        "LEVEL": "128",
        "BARE": "plain",
    }


def test_opt_values_come_from_vars(tmp_path: Path) -> None:
    text = BASE + "    environment:\n      X: ${opt:flavour}\n      R: ${aws:region}\n"
    api = read(tmp_path, text, vars={"flavour": "mint", "region": "ap-south-1"})
    assert env(api) == {"X": "mint", "R": "ap-south-1"}
    assert api.region == "ap-south-1"


def test_a_whole_variable_keeps_the_type_of_its_value(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        service: chat
        custom:
          env: {A: one, B: two}
          timeout: 12
        provider:
          name: aws
          environment: ${self:custom.env}
          timeout: ${self:custom.timeout}
        functions:
          connect:
            handler: app.handler
            events:
              - websocket: $connect
        """,
    )
    assert env(api) == {"A": "one", "B": "two"}
    assert api.functions["connect"].timeout == 12.0


def test_file_variables_read_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dev.yml").write_text("table: conn-${sls:stage}\nnested: {x: 1}\n")
    (tmp_path / "config" / "common.json").write_text(json.dumps({"api": {"name": "from-json"}}))
    (tmp_path / "functions.yml").write_text(
        "connect:\n  handler: app.handler\n  events:\n    - websocket: $connect\n"
    )
    api = read(
        tmp_path,
        """
        service: chat
        provider:
          name: aws
          websocketsApiName: ${file(./config/common.json):api.name}
          environment:
            TABLE: ${file(./config/${sls:stage}.yml):table}
            X: ${file(./config/dev.yml):nested.x}
            MISSING: ${file(./config/none.yml):a, 'default'}
        functions: ${file(./functions.yml)}
        """,
    )
    assert api.name == "from-json"
    assert env(api) == {"TABLE": "conn-dev", "X": "1", "MISSING": "default"}
    assert [r.key for r in api.routes] == ["$connect"]


def test_functions_as_a_list_of_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("a:\n  handler: a.h\n  events:\n    - websocket: $connect\n")
    (tmp_path / "b.yml").write_text("b:\n  handler: b.h\n  events:\n    - websocket: $default\n")
    text = "service: s\nprovider:\n  name: aws\nfunctions:\n"
    text += "  - ${file(./a.yml)}\n  - ${file(./b.yml)}\n"
    api = read(tmp_path, text)
    assert {r.key: r.integration.function for r in api.routes} == {"$connect": "a", "$default": "b"}


def test_params_by_stage(tmp_path: Path) -> None:
    text = """
        service: chat
        params:
          default: {table: conn-default, size: 1}
          prod: {table: conn-prod}
        provider:
          name: aws
          environment:
            TABLE: ${param:table}
            SIZE: ${param:size}
        functions:
          connect:
            handler: app.handler
            events:
              - websocket: $connect
        """
    assert env(read(tmp_path, text)) == {"TABLE": "conn-default", "SIZE": "1"}
    assert env(read(tmp_path, text, stage="prod")) == {"TABLE": "conn-prod", "SIZE": "1"}


def test_remote_sources_take_an_override_from_vars(tmp_path: Path) -> None:
    text = BASE + "    environment:\n      KEY: ${ssm:/chat/key}\n      OUT: ${cf:stack.Out, 'x'}\n"
    api = read(tmp_path, text, vars={"ssm:/chat/key": "secret"})
    assert env(api) == {"KEY": "secret", "OUT": "x"}


def test_cloudformation_placeholders_are_not_serverless_variables(tmp_path: Path) -> None:
    text = BASE + (
        "    environment:\n"
        "      URL: !Sub 'https://${WebsocketsApi}.execute-api.${AWS::Region}"
        ".amazonaws.com/${sls:stage}'\n"
    )
    api = read(tmp_path, text)
    assert env(api) == {"URL": f"https://{api.api_id}.execute-api.us-east-1.amazonaws.com/dev"}


TABLES = """\
service: chat
provider:
  name: aws
  stage: prod
  environment:
    TABLE: !Ref ConnectionsTable
    TABLE_LONG:
      Ref: ConnectionsTable
    TABLE_ARN: !GetAtt ConnectionsTable.Arn
    UNNAMED: !Ref UnnamedTable
    BUCKET: !Ref Bucket
    ENDPOINT: !Join
      - ''
      - ['https://', !Ref WebsocketsApi, '.execute-api.', !Ref AWS::Region, '.amazonaws.com/',
         '${sls:stage}']
    ENDPOINT_SUB:
      Fn::Sub:
        - https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}
        - {Api: !Ref WebsocketsApi, Stage: '${sls:stage}'}
    WSS: !GetAtt WebsocketsApi.ApiEndpoint
    FIRST: !Select [0, !Split [',', 'a,b']]
    STACK: !Sub '${AWS::StackName}:${AWS::Partition}:${AWS::AccountId}:${!Literal}'
functions:
  connect:
    handler: app.handler
    events:
      - websocket: $connect
resources:
  Resources:
    ConnectionsTable:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: ${self:service}-connections-${sls:stage}
        BillingMode: PAY_PER_REQUEST
        AttributeDefinitions:
          - {AttributeName: connectionId, AttributeType: S}
          - {AttributeName: room, AttributeType: S}
          - {AttributeName: ts, AttributeType: N}
        KeySchema:
          - {AttributeName: connectionId, KeyType: HASH}
        GlobalSecondaryIndexes:
          - IndexName: byRoom
            KeySchema:
              - {AttributeName: room, KeyType: HASH}
              - {AttributeName: ts, KeyType: RANGE}
            Projection: {ProjectionType: INCLUDE, NonKeyAttributes: [name]}
        LocalSecondaryIndexes:
          - IndexName: byTs
            KeySchema:
              - {AttributeName: connectionId, KeyType: HASH}
              - {AttributeName: ts, KeyType: RANGE}
            Projection: {ProjectionType: KEYS_ONLY}
    UnnamedTable:
      Type: AWS::DynamoDB::Table
      Properties:
        AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
        KeySchema: [{AttributeName: id, KeyType: HASH}]
    Bucket:
      Type: AWS::S3::Bucket
      Properties: {BucketName: chat-files}
    Role:
      Type: AWS::IAM::Role
    Role2:
      Type: AWS::IAM::Role
  Outputs:
    X: {Value: 1}
"""


def test_resources_become_tables_and_intrinsics_resolve(tmp_path: Path) -> None:
    api = read(tmp_path, TABLES)
    endpoint = f"https://{api.api_id}.execute-api.us-east-1.amazonaws.com/prod"
    assert env(api) == {
        "TABLE": "chat-connections-prod",
        "TABLE_LONG": "chat-connections-prod",
        "TABLE_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/chat-connections-prod",
        "UNNAMED": "chat-prod-UnnamedTable",
        "BUCKET": "chat-files",
        "ENDPOINT": endpoint,
        "ENDPOINT_SUB": endpoint,
        "WSS": f"wss://{api.api_id}.execute-api.us-east-1.amazonaws.com",
        "FIRST": "a",
        "STACK": "chat-prod:aws:123456789012:${Literal}",
    }
    table, unnamed = api.tables
    assert table.name == "chat-connections-prod"
    assert table.key_schema == (("connectionId", "HASH"),)
    assert table.attributes == {"connectionId": "S", "room": "S", "ts": "N"}
    (gsi,) = table.global_indexes
    assert (gsi.name, gsi.key_schema) == ("byRoom", (("room", "HASH"), ("ts", "RANGE")))
    assert (gsi.projection, gsi.non_key_attributes) == ("INCLUDE", ("name",))
    assert table.local_indexes[0].projection == "KEYS_ONLY"
    assert table.origin.line == 30
    assert unnamed.name == "chat-prod-UnnamedTable"
    assert api.ignored == {"AWS::S3::Bucket": 1, "AWS::IAM::Role": 2}


def test_plugins_other_events_and_unused_functions_are_counted(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        BASE
        + """\
      - http: {path: /, method: get}
  cron:
    handler: cron.handler
    events:
      - schedule: rate(1 hour)
plugins:
  - serverless-python-requirements
  - serverless-offline
""",
    )
    assert list(api.functions) == ["connect"]
    assert api.ignored == {
        "plugin serverless-python-requirements": 1,
        "plugin serverless-offline": 1,
        "http event": 1,
        "schedule event": 1,
        "function without websocket events": 1,
    }


def test_a_function_outside_the_api_may_use_remote_variables(tmp_path: Path) -> None:
    text = BASE + "  other:\n    handler: o.h\n    environment:\n      K: ${ssm:/x}\n"
    assert list(read(tmp_path, text).functions) == ["connect"]


def test_authorizers(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        service: chat
        provider:
          name: aws
        functions:
          auth:
            handler: auth.handler
          auth2:
            handler: auth2.handler
          connect:
            handler: app.connect
            events:
              - websocket:
                  route: $connect
                  authorizer:
                    name: auth
                    identitySource:
                      - route.request.querystring.token
                      - route.request.header.Auth
          other:
            handler: app.other
            events:
              - websocket:
                  route: $default
                  authorizer: auth2
        """,
    )
    assert api.routes[0].authorizer == "auth"
    assert api.authorizers["auth"].identity_sources == (
        "route.request.querystring.token",
        "route.request.header.Auth",
    )
    assert api.authorizers["auth"].function == "auth"
    assert api.authorizers["auth2"].identity_sources == ("route.request.header.Auth",)
    assert set(api.functions) == {"auth", "auth2", "connect", "other"}


def test_local_layers(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        service: chat
        provider:
          name: aws
        layers:
          common-libs:
            path: layers/common
        functions:
          connect:
            handler: app.handler
            layers:
              - !Ref CommonDashlibsLambdaLayer
              - arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV2:40
            events:
              - websocket: $connect
        """,
    )
    assert api.functions["connect"].layers == ((tmp_path / "layers/common").resolve(),)
    assert api.ignored == {"layer ARN": 1}


def test_a_folder_is_read_through_its_serverless_yaml(tmp_path: Path) -> None:
    (tmp_path / "serverless.yaml").write_text(BASE)
    assert serverless.read(tmp_path, ReadOptions()).routes[0].key == "$connect"


# -- errors --------------------------------------------------------------------------------------


def test_ssm_without_override_names_file_line_expression_and_override(tmp_path: Path) -> None:
    e = error(tmp_path, BASE + "    environment:\n      KEY: ${ssm:/chat/key}\n")
    assert str(e) == (
        f"{tmp_path.resolve() / 'serverless.yml'}:11: ${{ssm:/chat/key}}: hubbub can't read SSM"
        ' parameters; pass --var "ssm:/chat/key=VALUE" or [import] vars = { "ssm:/chat/key" = "…" }'
    )
    assert e.origin.line == 11


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("${cf:stack.Output}", "hubbub can't read CloudFormation stack outputs"),
        ("${s3:bucket/key}", "hubbub can't read S3 objects"),
        ("${opt:flavour}", "no value for option 'flavour'; pass --var flavour=VALUE"),
        (
            "${env:NOPE_NOT_SET}",
            "the environment variable NOPE_NOT_SET is not set; set NOPE_NOT_SET",
        ),
        ("${param:size}", "no parameter 'size'; pass --var size=VALUE"),
        ("${self:custom.nothing}", "self:custom.nothing has no value"),
        ("${file(./none.yml):a}", "the file or the key in it does not exist"),
        ("${file(./vars.js):a}", "hubbub does not run JavaScript variable files"),
        ("${vault:secret/x}", "hubbub does not know the variable source 'vault'"),
        ("${sls:nothing}", "unknown sls value"),
        ("${aws:nothing}", "unknown aws value"),
    ],
)
def test_variable_errors(tmp_path: Path, expression: str, problem: str) -> None:
    e = error(tmp_path, BASE + f"    environment:\n      K: {expression}\n")
    assert f":11: {expression}: {problem}" in str(e)


def test_a_self_reference_cycle_is_an_error(tmp_path: Path) -> None:
    text = BASE.replace(
        "functions:", "custom:\n  a: ${self:custom.b}\n  b: ${self:custom.a}\nfunctions:"
    )
    text += "    environment:\n      K: ${self:custom.a}\n"
    assert "refers to itself" in str(error(tmp_path, text))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("name: aws", "name: azure"), "provider.name: azure: hubbub reads only AWS services"),
        (("service: chat", "service: ''"), "service: missing"),
        (("handler: src/connect.handler", "image: x"), "not container images"),
        (("handler: src/connect.handler", "runtime: x"), "functions.connect.handler: missing"),
        (("websocket: $connect", "websocket: {}"), "websocket: a websocket event needs a route"),
        (
            ("    handler: src/", "    package: {artifact: x.zip}\n    handler: src/"),
            "not a built artifact",
        ),
    ],
)
def test_structure_errors(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    assert message in str(error(tmp_path, BASE.replace(*change)))


def test_a_route_defined_twice_is_an_error(tmp_path: Path) -> None:
    e = error(tmp_path, BASE + "      - websocket: $connect\n")
    assert "$connect: route defined twice" in str(e)


def test_authorizer_errors(tmp_path: Path) -> None:
    arn = BASE.replace(
        "- websocket: $connect",
        "- websocket: {route: $connect, authorizer: {arn: arn:aws:lambda:x}}",
    )
    assert "hubbub runs only authorizers defined in this serverless.yml" in str(
        error(tmp_path, arn)
    )
    missing = BASE.replace(
        "- websocket: $connect", "- websocket: {route: $connect, authorizer: nope}"
    )
    assert "authorizer: nope: no function of that name" in str(error(tmp_path, missing))


def test_intrinsic_errors(tmp_path: Path) -> None:
    ref = BASE + "    environment:\n      K: !Ref Nothing\n"
    assert "Ref: Nothing: no resource or pseudo parameter of that name" in str(error(tmp_path, ref))
    att = TABLES.replace("!GetAtt ConnectionsTable.Arn", "!GetAtt Bucket.WebsiteURL")
    assert "hubbub can't know the attribute WebsiteURL of a AWS::S3::Bucket" in str(
        error(tmp_path, att)
    )
    imported = BASE + "    environment:\n      K: !ImportValue x\n"
    assert "Fn::ImportValue in K: hubbub does not evaluate" in str(error(tmp_path, imported))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    e = error(tmp_path, "service: chat\nprovider: [\n")
    assert e.origin.line == 3
    assert "not valid YAML" in str(e)


def test_a_folder_without_serverless_yml(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match=r"no serverless\.yml"):
        serverless.read(tmp_path, ReadOptions())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "a serverless.yml must be a mapping"),
        ("service: chat\n", "provider: missing"),
        (
            BASE.replace("functions:\n", "functions:\n  - 3\n  -\n").split("  connect")[0],
            "functions: not a map",
        ),
        (
            BASE.replace(
                "  connect:\n    handler: src/connect.handler", "  connect: 3\n  x:\n    handler: h"
            ),
            "connect: not a map",
        ),
        (
            BASE.replace(
                "- websocket: $connect", "- websocket: {route: $connect, authorizer: [1]}"
            ),
            "authorizer: must be a function name or a map",
        ),
        (
            BASE + "    layers: [!Ref NopeLambdaLayer]\n",
            "Ref: NopeLambdaLayer: no layer of that name",
        ),
        (BASE + "    layers: [./local]\n", "layers: ./local: not a layer hubbub can find"),
        (BASE + "    layers: [!Ref XLambdaLayer]\nlayers:\n  x: {}\n", "layers.x.path: missing"),
        (
            BASE + "    environment: {K: !GetAtt Nope.Arn}\n",
            "Fn::GetAtt: Nope.Arn: no resource of that name",
        ),
        (BASE + "    environment: {K: '${file(./v.yml):a'}\n", ""),
    ],
)
def test_more_structure_errors(tmp_path: Path, text: str, message: str) -> None:
    if not message:  # an unclosed variable is text, as Serverless leaves it
        assert env(read(tmp_path, text)) == {"K": "${file(./v.yml):a"}
        return
    assert message in str(error(tmp_path, text))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "KeySchema: [{AttributeName: id, KeyType: SIDEWAYS}]",
            "KeyType: SIDEWAYS: must be HASH or RANGE",
        ),
        ("KeySchema: []", "T.Properties.KeySchema: missing"),
        (
            "KeySchema: [{AttributeName: id, KeyType: HASH}]\n"
            "        AttributeDefinitions: [{AttributeName: id, AttributeType: X}]",
            "AttributeType: X: must be S, N or B",
        ),
    ],
)
def test_table_errors(tmp_path: Path, table: str, message: str) -> None:
    text = (
        BASE
        + "resources:\n  Resources:\n    T:\n      Type: AWS::DynamoDB::Table\n"
        + f"      Properties:\n        {table}\n"
    )
    assert message in str(error(tmp_path, text))


def test_a_file_variable_with_bad_json_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text('{\n  "a": 1,\n}\n')
    e = error(tmp_path, BASE + "    environment:\n      K: ${file(./v.json):a}\n")
    assert e.origin.file == (tmp_path / "v.json").resolve()
    assert e.origin.line == 3
    assert "not valid JSON" in str(e)


def test_a_variable_inside_a_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "v.yml").write_text("a: 1\nb: ${ssm:/x}\n")
    e = error(tmp_path, BASE + "    environment:\n      K: ${file(./v.yml):b}\n")
    assert (e.origin.file, e.origin.line) == ((tmp_path / "v.yml").resolve(), 2)


@given(st.text(max_size=40).filter(lambda t: "${" not in t))
@settings(max_examples=60, deadline=None)
def test_text_without_variables_is_unchanged(text: str) -> None:
    context = Context(
        config={},
        file=Path("serverless.yml"),
        text="",
        vars={},
        env={},
        stage=lambda: "dev",
        region=lambda: "us-east-1",
        account_id="123456789012",
    )
    assert context.resolve({"k": [text]}) == {"k": [text]}


def test_invalid_yaml_is_worded_by_the_pure_python_parser(tmp_path: Path) -> None:
    # Parsed with libyaml when PyYAML has it; its terser messages are not the ones users see.
    e = error(tmp_path, "service: chat\nprovider: name: aws\n")
    assert "mapping values are not allowed here" in str(e)
    assert e.origin.line == 2
