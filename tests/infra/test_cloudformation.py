"""The SAM/CloudFormation reader: every intrinsic function, the resources that map, and every
error message (file, line, expression and how to override)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hubbub.infra.cloudformation import read
from hubbub.infra.model import ImportedApi, InfraError, ReadOptions

API = """\
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: chat
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.type
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $connect
      Target: !Sub integrations/${ConnectInteg}
  ConnectInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/\
functions/${Fn.Arn}/invocations
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code/
      Handler: app.handler
      Runtime: python3.12
"""


def _template(tmp_path: Path, body: str, head: str = "", name: str = "template.yaml") -> Path:
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "app.py").write_text("def handler(e, c):\n    return {}\n")
    path = tmp_path / name
    text = "Transform: AWS::Serverless-2016-10-31\n" + textwrap.dedent(head) + "Resources:\n"
    path.write_text(text + API + textwrap.indent(textwrap.dedent(body), "  "))
    return path


def _read(path: Path, **options: Any) -> ImportedApi:
    return read(path, ReadOptions(**options))


def _env(tmp_path: Path, value: str, head: str = "", extra: str = "", **options: Any) -> str:
    """What ``value`` (YAML) evaluates to, as the function's environment variable X."""
    body = f"""\
    Fn:
      Type: AWS::Serverless::Function
      Properties:
        CodeUri: code/
        Handler: app.handler
        Runtime: python3.12
        Environment:
          Variables:
            X: {value}
    {extra}"""
    path = _template(tmp_path, "", head)
    text = path.read_text().replace(API[API.index("  Fn:") :], "")
    path.write_text(text + textwrap.indent(textwrap.dedent(body), "  "))
    return _read(path, **options).functions["Fn"].environment["X"]


HEAD = """\
Parameters:
  Stage:
    Type: String
    Default: dev
  Names:
    Type: CommaDelimitedList
    Default: a,b,c
  NoDefault:
    Type: String
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsDev, !Equals [1, 1]]
  Either: !Or [!Condition IsProd, !Condition IsDev]
Mappings:
  Sizes:
    dev: {Memory: 128}
    prod: {Memory: 1024}
"""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!Ref Stage", "dev"),
        ("!Ref AWS::Region", "us-east-1"),
        ("!Ref AWS::AccountId", "123456789012"),
        ("!Ref AWS::Partition", "aws"),
        ("!Ref AWS::StackName", "PLACEHOLDER"),
        ("!Ref AWS::URLSuffix", "amazonaws.com"),
        ("!Sub '${Stage}-${AWS::Region}'", "dev-us-east-1"),
        ("!Sub ['${A}/${B}', {A: x, B: !Ref Stage}]", "x/dev"),
        ("!Sub 'literal ${!Stage}'", "literal ${Stage}"),
        ("!Sub '${Fn.Arn}'", "arn:aws:lambda:us-east-1:123456789012:function:Fn"),
        ("!GetAtt Fn.Arn", "arn:aws:lambda:us-east-1:123456789012:function:Fn"),
        ("!GetAtt [Fn, Arn]", "arn:aws:lambda:us-east-1:123456789012:function:Fn"),
        ("!Join ['-', [a, !Ref Stage, c]]", "a-dev-c"),
        ("!Select [1, !Ref Names]", "b"),
        ("!Select [2, !Split [',', 'x,y,z']]", "z"),
        ("!If [IsProd, big, small]", "small"),
        ("!If [IsDev, !Ref Stage, !Ref AWS::NoValue]", "dev"),
        ("!If [Both, both, neither]", "both"),
        ("!If [Either, either, neither]", "either"),
        ("!FindInMap [Sizes, !Ref Stage, Memory]", "128"),
        ("!Base64 hi", "aGk="),
        ("{'Fn::Join': ['', ['a', {'Ref': 'Stage'}]]}", "adev"),
        (
            "{'Fn::GetAtt': ['Api', 'ApiEndpoint']}",
            "wss://API_ID.execute-api.us-east-1.amazonaws.com",
        ),
        ("!Ref Api", "API_ID"),
        ("!Ref ConnectInteg", "ConnectInteg"),
        ("!Select [0, !GetAZs '']", "us-east-1a"),
    ],
)
def test_expressions(tmp_path: Path, value: str, expected: str) -> None:
    from hubbub.aws.ids import api_id_for

    expected = expected.replace("PLACEHOLDER", tmp_path.name).replace("API_ID", api_id_for("chat"))
    assert _env(tmp_path, value, HEAD) == expected


def test_parameters_are_overridden_and_pseudo_parameters_too(tmp_path: Path) -> None:
    value = "!Sub '${Stage}/${AWS::Region}/${AWS::StackName}'"
    overrides = {"Stage": "prod", "AWS::Region": "eu-west-1", "AWS::StackName": "chat-stack"}
    assert _env(tmp_path, value, HEAD, parameters=overrides) == "prod/eu-west-1/chat-stack"
    assert _env(tmp_path, "!If [IsProd, big, small]", HEAD, parameters={"Stage": "prod"}) == "big"
    memory = "!FindInMap [Sizes, !Ref Stage, Memory]"
    assert _env(tmp_path, memory, HEAD, parameters={"Stage": "prod"}) == "1024"


def test_json_template(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.py").write_text("")
    template = {
        "Resources": {
            "Api": {
                "Type": "AWS::ApiGatewayV2::Api",
                "Properties": {"Name": "j", "ProtocolType": "WEBSOCKET"},
            },
            "R": {
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "RouteKey": "$default",
                    "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "I"}]]},
                },
            },
            "I": {
                "Type": "AWS::ApiGatewayV2::Integration",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "IntegrationType": "HTTP_PROXY",
                    "IntegrationUri": "https://example.com/ws",
                },
            },
        }
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(template))
    api = _read(path)
    assert api.format == "cloudformation"
    assert api.routes[0].origin.line == 1  # all of it is on line 1
    path.write_text(json.dumps(template, indent=1))
    api = _read(path)
    assert api.routes[0].origin.line == _line_of(path, '"R": {')
    assert api.routes[0].integration.kind == "http"
    assert api.routes[0].integration.url == "https://example.com/ws"


def test_sam_globals_layers_tables_and_stage(tmp_path: Path) -> None:
    (tmp_path / "layer" / "python").mkdir(parents=True)
    head = """\
    Globals:
      Function:
        Timeout: 5
        MemorySize: 256
        Environment:
          Variables:
            FROM_GLOBALS: g
            SHARED: global
    """
    body = """\
    Fn:
      Type: AWS::Serverless::Function
      Properties:
        CodeUri: code/
        Handler: app.handler
        Runtime: python3.12
        Timeout: 7
        Layers:
          - !Ref Layer
          - arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV2:40
        Environment:
          Variables:
            SHARED: own
            TABLE: !Ref Simple
    Layer:
      Type: AWS::Serverless::LayerVersion
      Properties:
        ContentUri: layer/
    Simple:
      Type: AWS::Serverless::SimpleTable
      Properties:
        PrimaryKey: {Name: connectionId, Type: String}
    Full:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: full
        AttributeDefinitions:
          - {AttributeName: pk, AttributeType: S}
          - {AttributeName: sk, AttributeType: N}
          - {AttributeName: g, AttributeType: S}
        KeySchema:
          - {AttributeName: pk, KeyType: HASH}
          - {AttributeName: sk, KeyType: RANGE}
        GlobalSecondaryIndexes:
          - IndexName: by-g
            KeySchema: [{AttributeName: g, KeyType: HASH}]
            Projection: {ProjectionType: INCLUDE, NonKeyAttributes: [x]}
        LocalSecondaryIndexes:
          - IndexName: local
            KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: g, KeyType: RANGE}]
            Projection: {ProjectionType: KEYS_ONLY}
    Stage:
      Type: AWS::ApiGatewayV2::Stage
      Properties:
        ApiId: !Ref Api
        StageName: live
        StageVariables: {color: blue}
    Bucket:
      Type: AWS::S3::Bucket
    Role1:
      Type: AWS::IAM::Role
    Role2:
      Type: AWS::IAM::Role
    """
    api = _read(_template(tmp_path, body, head))
    fn = api.functions["Fn"]
    assert fn.timeout == 7
    assert fn.memory_mb == 256
    assert fn.environment == {
        "FROM_GLOBALS": "g",
        "SHARED": "own",
        "TABLE": f"{tmp_path.name}-Simple",
    }
    assert fn.layers == ((tmp_path / "layer").resolve(),)
    assert fn.code_root == (tmp_path / "code").resolve()
    assert api.stage == "live"
    assert api.stage_variables == {"color": "blue"}
    assert api.route_selection_expression == "$request.body.type"
    simple, full = api.tables
    assert simple.key_schema == (("connectionId", "HASH"),)
    assert full.key_schema == (("pk", "HASH"), ("sk", "RANGE"))
    assert full.attributes == {"pk": "S", "sk": "N", "g": "S"}
    assert full.global_indexes[0].projection == "INCLUDE"
    assert full.global_indexes[0].non_key_attributes == ("x",)
    assert full.local_indexes[0].name == "local"
    assert api.ignored == {
        "AWS::IAM::Role": 2,
        "AWS::S3::Bucket": 1,
        "Lambda layer arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV2:40"
        " (install its packages locally)": 1,
    }
    # --stage picks the stage name, whatever the template says.
    assert _read(_template(tmp_path, body, head), stage="test").stage == "test"


def test_routes_authorizers_and_responses(tmp_path: Path) -> None:
    body = """\
    Send:
      Type: AWS::ApiGatewayV2::Route
      Properties:
        ApiId: !Ref Api
        RouteKey: send
        Target: !Join ['/', [integrations, !Ref SendInteg]]
    SendInteg:
      Type: AWS::ApiGatewayV2::Integration
      Properties:
        ApiId: !Ref Api
        IntegrationType: AWS_PROXY
        IntegrationUri: !GetAtt Fn.Arn
    SendResponse:
      Type: AWS::ApiGatewayV2::RouteResponse
      Properties:
        ApiId: !Ref Api
        RouteId: !Ref Send
        RouteResponseKey: $default
    Echo:
      Type: AWS::ApiGatewayV2::Route
      Properties:
        ApiId: !Ref Api
        RouteKey: echo
        RouteResponseSelectionExpression: $default
        Target: !Sub integrations/${Mock}
    Mock:
      Type: AWS::ApiGatewayV2::Integration
      Properties:
        ApiId: !Ref Api
        IntegrationType: MOCK
    ConnectRoute:
      Type: AWS::ApiGatewayV2::Route
      Properties:
        ApiId: !Ref Api
        RouteKey: $connect
        AuthorizationType: CUSTOM
        AuthorizerId: !Ref Auth
        Target: !Sub integrations/${ConnectInteg}
    Auth:
      Type: AWS::ApiGatewayV2::Authorizer
      Properties:
        ApiId: !Ref Api
        Name: auth
        AuthorizerType: REQUEST
        AuthorizerUri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/\
functions/arn:aws:lambda:us-east-1:123456789012:function:authorize/invocations
        IdentitySource: [route.request.header.Auth, route.request.querystring.token]
    AuthFn:
      Type: AWS::Lambda::Function
      Properties:
        FunctionName: authorize
        Code: code
        Handler: app.handler
        Runtime: python3.12
    """
    api = _read(_template(tmp_path, body))
    routes = {r.key: r for r in api.routes}
    assert routes["send"].route_response is True
    assert routes["send"].integration.function == "Fn"
    assert routes["echo"].integration.kind == "mock"
    assert routes["echo"].route_response is True
    assert routes["$connect"].authorizer == "Auth"
    auth = api.authorizers["Auth"]
    assert auth.kind == "request"
    assert auth.function == "authorize"
    assert auth.identity_sources == ("route.request.header.Auth", "route.request.querystring.token")
    assert api.functions["authorize"].code_root == (tmp_path / "code").resolve()


def test_jwt_authorizer(tmp_path: Path) -> None:
    body = """\
    ConnectRoute:
      Type: AWS::ApiGatewayV2::Route
      Properties:
        ApiId: !Ref Api
        RouteKey: $connect
        AuthorizationType: JWT
        AuthorizerId: !Ref Jwt
        Target: !Sub integrations/${ConnectInteg}
    Jwt:
      Type: AWS::ApiGatewayV2::Authorizer
      Properties:
        ApiId: !Ref Api
        Name: jwt
        AuthorizerType: JWT
        IdentitySource: [route.request.querystring.token]
        JwtConfiguration:
          Issuer: https://issuer.example
          Audience: [app]
    """
    auth = _read(_template(tmp_path, body)).authorizers["Jwt"]
    assert auth.kind == "jwt"
    assert auth.issuer == "https://issuer.example"
    assert auth.audience == ("app",)


def test_conditions_drop_resources(tmp_path: Path) -> None:
    head = "Conditions:\n  Never: !Equals [a, b]\n"
    body = """\
    Bucket:
      Type: AWS::S3::Bucket
      Condition: Never
    """
    assert _read(_template(tmp_path, body, head)).ignored == {}


def _error(tmp_path: Path, body: str, head: str = "", **options: Any) -> InfraError:
    path = _template(tmp_path, body, head)
    with pytest.raises(InfraError) as caught:
        _read(path, **options)
    return caught.value


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!Ref Nope", "Ref Nope: no such parameter or resource in the template"),
        ("!GetAtt Nope.Arn", "Fn::GetAtt Nope.Arn: no such resource in the template"),
        ("!If [Nope, a, b]", "Condition Nope: no such condition in Conditions"),
        ("!FindInMap [M, a, b]", "Mappings has no M.a.b"),
        ("!Select [5, [a]]", "cannot select: list index out of range"),
        ("!Join [',']", "takes a list of 2 arguments"),
        ("!ImportValue shared-table", "hubbub can't read another stack's exports"),
        ("!Cidr [a, 1, 2]", "hubbub does not evaluate Fn::Cidr"),
        ("'{{resolve:ssm:/chat/table}}'", "hubbub can't resolve dynamic references (ssm)"),
    ],
)
def test_expression_errors(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(InfraError) as caught:
        _env(tmp_path, value)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str((tmp_path / "template.yaml").resolve()) + ":")
    assert caught.value.origin.line == _line_of(tmp_path / "template.yaml", "X: ")


def test_parameter_errors_name_the_override(tmp_path: Path) -> None:
    head = """\
    Parameters:
      Table:
        Type: String
      FromSsm:
        Type: AWS::SSM::Parameter::Value<String>
        Default: /chat/table
      Dynamic:
        Type: String
        Default: '{{resolve:secretsmanager:chat}}'
    """
    for name, problem in (
        ("Table", "parameter Table has no Default"),
        ("FromSsm", "hubbub can't read SSM parameters"),
        ("Dynamic", "hubbub can't resolve dynamic references"),
    ):
        with pytest.raises(InfraError) as caught:
            _env(tmp_path, f"!Ref {name}", head)
        assert problem in str(caught.value)
        assert f"pass --parameter {name}=VALUE" in str(caught.value)
        assert caught.value.origin.line == _line_of(tmp_path / "template.yaml", f"  {name}:")
        # The override is the way out.
        assert _env(tmp_path, f"!Ref {name}", head, parameters={name: "t"}) == "t"
    with pytest.raises(InfraError, match="the template has no parameter 'Tabel'"):
        _env(tmp_path, "x", head, parameters={"Tabel": "t"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            """\
            Fn:
              Type: AWS::Lambda::Function
              Properties:
                Handler: app.handler
                Runtime: python3.12
                Code: {S3Bucket: bucket, S3Key: code.zip}
            """,
            "the code is only in S3: hubbub can't fetch it; point Code at the local folder",
        ),
        (
            """\
            Fn:
              Type: AWS::Serverless::Function
              Properties:
                Handler: app.handler
                CodeUri: s3://bucket/code.zip
            """,
            "the code is only in S3",
        ),
        (
            """\
            Fn:
              Type: AWS::Serverless::Function
              Properties:
                Handler: app.handler
                CodeUri: missing/
            """,
            "missing is not a folder",
        ),
        (
            """\
            Fn:
              Type: AWS::Serverless::Function
              Properties:
                Handler: app.handler
                InlineCode: "def handler(e, c): pass"
            """,
            "InlineCode: hubbub runs functions from a folder",
        ),
        (
            """\
            Fn:
              Type: AWS::Lambda::Function
              Properties:
                Handler: app.handler
                Code: {ZipFile: "def handler(e, c): pass"}
            """,
            "Code.ZipFile: hubbub runs functions from a folder",
        ),
        (
            """\
            Fn:
              Type: AWS::Serverless::Function
              Properties:
                PackageType: Image
                ImageUri: repo/image:1
            """,
            "PackageType: Image: hubbub can't run container image functions",
        ),
        (
            """\
            Fn:
              Type: AWS::Lambda::Function
              Properties:
                Handler: app.handler
                Code: code
              Metadata:
                aws:asset:path: asset.123
            """,
            "the CDK asset folder",
        ),
    ],
)
def test_function_code_errors(tmp_path: Path, body: str, message: str) -> None:
    path = _template(tmp_path, "")
    text = path.read_text().replace(API[API.index("  Fn:") :], "")
    path.write_text(text + textwrap.indent(textwrap.dedent(body), "  "))
    with pytest.raises(InfraError) as caught:
        _read(path)
    assert message in str(caught.value)
    assert caught.value.origin.line is not None


def test_api_errors(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n")
    with pytest.raises(InfraError, match="defines no WebSocket API"):
        _read(path)
    two = API + "  Api2:\n    Type: AWS::ApiGatewayV2::Api\n    Properties:\n"
    two += "      Name: other\n      ProtocolType: WEBSOCKET\n"
    path.write_text("Resources:\n" + two)
    with pytest.raises(InfraError, match="defines 2 WebSocket APIs"):
        _read(path)
    path.write_text("Resources: {}\n")
    with pytest.raises(InfraError, match="Resources: is empty"):
        _read(path)
    path.write_text("Resources:\n  X: [unclosed\n")
    with pytest.raises(InfraError, match=r"template.yaml:3: not valid YAML"):
        _read(path)
    path.write_text('{"Resources": ')
    with pytest.raises(InfraError, match=r"not valid JSON"):
        _read(path)


def test_route_errors(tmp_path: Path) -> None:
    bad_target = """\
    Other:
      Type: AWS::ApiGatewayV2::Route
      Properties:
        ApiId: !Ref Api
        RouteKey: other
        Target: integrations/Nope
    """
    error = _error(tmp_path, bad_target)
    assert "integrations/Nope: names no AWS::ApiGatewayV2::Integration" in str(error)
    assert error.origin.line == _line_of(tmp_path / "template.yaml", "Target: integrations/Nope")
    unknown_function = """\
    Other:
      Type: AWS::ApiGatewayV2::Route
      Properties:
        ApiId: !Ref Api
        RouteKey: other
        Target: integrations/OtherInteg
    OtherInteg:
      Type: AWS::ApiGatewayV2::Integration
      Properties:
        ApiId: !Ref Api
        IntegrationType: AWS_PROXY
        IntegrationUri: arn:aws:lambda:us-east-1:123456789012:function:elsewhere
    """
    assert "names a Lambda function 'elsewhere' this template does not define" in str(
        _error(tmp_path, unknown_function)
    )
    bad_http = unknown_function.replace("AWS_PROXY", "HTTP_PROXY")
    assert "an HTTP integration needs an http(s):// IntegrationUri" in str(
        _error(tmp_path, bad_http)
    )
    odd = unknown_function.replace("AWS_PROXY", "VPC_LINK")
    assert "IntegrationType: VPC_LINK: unsupported integration type" in str(_error(tmp_path, odd))


def test_code_uri_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "code.zip").mkdir()  # a folder named like a zip is still a zip to SAM users
    body = """\
    Fn:
      Type: AWS::Serverless::Function
      Properties:
        Handler: app.handler
        CodeUri: code.zip
    """
    path = _template(tmp_path, "")
    text = path.read_text().replace(API[API.index("  Fn:") :], "")
    path.write_text(text + textwrap.indent(textwrap.dedent(body), "  "))
    with pytest.raises(InfraError, match="not a zip; unzip it"):
        _read(path)


def test_yaml_errors_keep_the_pure_python_parsers_wording(tmp_path: Path) -> None:
    # Templates are parsed with libyaml when PyYAML has it (start-up time); its messages are
    # terser ("mapping values are not allowed in this context", no character named), so an
    # invalid template is reported in the pure-Python parser's words.
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  X: a: b\n")
    with pytest.raises(
        InfraError, match=r"template.yaml:2: not valid YAML: mapping values are not allowed here$"
    ):
        _read(path)
    path.write_text("Resources:\n  X: @x\n")
    with pytest.raises(InfraError, match=r"found character '@' that cannot start any token"):
        _read(path)


def test_the_libyaml_and_pure_python_parsers_read_a_template_alike() -> None:
    yaml = pytest.importorskip("yaml")
    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML without libyaml")
    from hubbub.infra import cloudformation

    text = textwrap.dedent(
        """\
        Resources:
          Api:
            Type: AWS::ApiGatewayV2::Api
            Properties: {Name: !Sub "${AWS::StackName}-ws", ProtocolType: WEBSOCKET}
          Route:
            Type: AWS::ApiGatewayV2::Route
            Properties:
              ApiId: !Ref Api
              Target: !Join ['/', [integrations, !GetAtt Integ.Id]]
        """
    )
    fast = cloudformation._load_yaml(Path("t.yaml"), text)
    real_cloader = yaml.CSafeLoader
    try:
        del yaml.CSafeLoader  # the pure-Python parser only, as without libyaml
        slow = cloudformation._load_yaml(Path("t.yaml"), text)
    finally:
        yaml.CSafeLoader = real_cloader
    assert fast == slow
    assert fast.key_lines == slow.key_lines == {"Resources": 1}
    route, route_slow = fast["Resources"]["Route"], slow["Resources"]["Route"]
    assert route.line == route_slow.line == 6
    api_id = route["Properties"]["ApiId"]
    assert api_id == {"Ref": "Api"}
    assert api_id.line == route_slow["Properties"]["ApiId"].line == 8
