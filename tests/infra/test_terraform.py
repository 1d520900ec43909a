"""The Terraform reader: expressions, references, modules, count/for_each, and every error."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.infra import hcl, terraform
from hubbub.infra.hcl import Evaluator
from hubbub.infra.model import ImportedApi, InfraError, ReadOptions

API = """\
resource "aws_apigatewayv2_api" "ws" {
  name                       = "chat"
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"
}

data "archive_file" "code" {
  type        = "zip"
  source_dir  = "${path.module}/src"
  output_path = "${path.module}/build/code.zip"
}

resource "aws_lambda_function" "connect" {
  function_name = "chat-connect"
  filename      = data.archive_file.code.output_path
  handler       = "connect.handler"
  runtime       = "python3.12"
}

resource "aws_apigatewayv2_integration" "connect" {
  api_id           = aws_apigatewayv2_api.ws.id
  integration_type = "AWS_PROXY"
  integration_uri  = aws_lambda_function.connect.invoke_arn
}

resource "aws_apigatewayv2_route" "connect" {
  api_id    = aws_apigatewayv2_api.ws.id
  route_key = "$connect"
  target    = "integrations/${aws_apigatewayv2_integration.connect.id}"
}
"""


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))


def read(
    tmp_path: Path, extra: str = "", files: dict[str, str] | None = None, **options: object
) -> ImportedApi:
    write(tmp_path, {"main.tf": API + textwrap.dedent(extra), **(files or {})})
    return terraform.read(tmp_path, ReadOptions(**options))  # type: ignore[arg-type]


def error(
    tmp_path: Path, extra: str = "", files: dict[str, str] | None = None, **options: object
) -> InfraError:
    with pytest.raises(InfraError) as caught:
        read(tmp_path, extra, files, **options)
    return caught.value


def env(api: ImportedApi, function: str = "chat-connect") -> dict[str, str]:
    return api.functions[function].environment


def with_env(variables: str) -> str:
    """API with the connect function's environment block set to ``variables``."""
    return API.replace(
        '  runtime       = "python3.12"\n',
        '  runtime       = "python3.12"\n  environment {\n    variables = {\n'
        + textwrap.indent(textwrap.dedent(variables), "      ")
        + "    }\n  }\n",
    )


def read_env(tmp_path: Path, variables: str, extra: str = "", **options: object) -> dict[str, str]:
    write(tmp_path, {"main.tf": with_env(variables) + textwrap.dedent(extra)})
    return env(terraform.read(tmp_path, ReadOptions(**options)))  # type: ignore[arg-type]


def test_route_integration_function_and_archive_code_root(tmp_path: Path) -> None:
    api = read(tmp_path)
    assert api.format == "terraform"
    assert (api.name, api.api_id, api.stage) == ("chat", "chat", "dev")
    assert api.route_selection_expression == "$request.body.action"
    (route,) = api.routes
    assert route.key == "$connect"
    assert route.integration.kind == "lambda"
    assert route.integration.function == "chat-connect"
    assert route.origin.line == 26
    assert route.origin.what == "aws_apigatewayv2_route.connect"
    function = api.functions["chat-connect"]
    assert function.handler == "connect.handler"
    assert function.runtime == "python3.12"
    assert function.code_root == (tmp_path / "src").resolve()
    assert (function.timeout, function.memory_mb) == (3.0, 128)
    assert api.ignored == {}


def test_a_single_tf_file_can_be_read(tmp_path: Path) -> None:
    write(tmp_path, {"api.tf": API, "other.tf": 'resource "aws_s3_bucket" "b" {}\n'})
    api = terraform.read(tmp_path / "api.tf", ReadOptions())
    assert api.ignored == {}
    assert terraform.read(tmp_path, ReadOptions()).ignored == {"aws_s3_bucket": 1}


def test_source_file_archives_and_arn_integrations(tmp_path: Path) -> None:
    text = API.replace('source_dir  = "${path.module}/src"', 'source_file = "lambda/app.py"')
    text = text.replace(".connect.invoke_arn", ".connect.arn")
    write(tmp_path, {"main.tf": text})
    api = terraform.read(tmp_path, ReadOptions())
    assert api.functions["chat-connect"].code_root == (tmp_path / "lambda").resolve()
    assert api.routes[0].integration.function == "chat-connect"


def test_function_settings_environment_and_layers(tmp_path: Path) -> None:
    text = API.replace(
        '  runtime       = "python3.12"\n',
        """  runtime       = "python3.12"
  timeout       = 30
  memory_size   = 512
  layers = [
    aws_lambda_layer_version.libs.arn,
    "arn:aws:lambda:us-east-1:017000801446:layer:Powertools:3",
  ]
  environment {
    variables = {
      TABLE  = aws_dynamodb_table.connections.name
      COUNT  = 2
      DEBUG  = true
    }
  }
""",
    )
    extra = """
    data "archive_file" "libs" {
      type        = "zip"
      source_dir  = "layers/libs"
      output_path = "build/libs.zip"
    }
    resource "aws_lambda_layer_version" "libs" {
      layer_name = "chat-libs"
      filename   = data.archive_file.libs.output_path
    }
    resource "aws_dynamodb_table" "connections" {
      name     = "connections"
      hash_key = "connectionId"
      attribute {
        name = "connectionId"
        type = "S"
      }
    }
    """
    write(tmp_path, {"main.tf": text + textwrap.dedent(extra)})
    api = terraform.read(tmp_path, ReadOptions())
    function = api.functions["chat-connect"]
    assert (function.timeout, function.memory_mb) == (30.0, 512)
    assert function.environment == {"TABLE": "connections", "COUNT": "2", "DEBUG": "true"}
    assert function.layers == ((tmp_path / "layers/libs").resolve(),)
    assert api.ignored == {"layer ARN": 1}


def test_tables_with_indexes(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        resource "aws_dynamodb_table" "messages" {
          name         = "messages"
          billing_mode = "PAY_PER_REQUEST"
          hash_key     = "room"
          range_key    = "ts"
          attribute {
            name = "room"
            type = "S"
          }
          attribute {
            name = "ts"
            type = "N"
          }
          attribute {
            name = "user"
            type = "S"
          }
          global_secondary_index {
            name               = "byUser"
            hash_key           = "user"
            range_key          = "ts"
            projection_type    = "INCLUDE"
            non_key_attributes = ["text"]
          }
          local_secondary_index {
            name            = "byUserLocal"
            range_key       = "user"
            projection_type = "KEYS_ONLY"
          }
        }
        """,
    )
    (table,) = api.tables
    assert table.name == "messages"
    assert table.key_schema == (("room", "HASH"), ("ts", "RANGE"))
    assert table.attributes == {"room": "S", "ts": "N", "user": "S"}
    (gsi,) = table.global_indexes
    assert (gsi.name, gsi.key_schema, gsi.projection, gsi.non_key_attributes) == (
        "byUser",
        (("user", "HASH"), ("ts", "RANGE")),
        "INCLUDE",
        ("text",),
    )
    (lsi,) = table.local_indexes
    assert lsi.key_schema == (("room", "HASH"), ("user", "RANGE"))
    assert table.origin.what == "aws_dynamodb_table.messages"


def test_stage_route_responses_http_and_mock_integrations(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        resource "aws_apigatewayv2_stage" "prod" {
          api_id          = aws_apigatewayv2_api.ws.id
          name            = "prod"
          auto_deploy     = true
          stage_variables = { table = "conn", size = 3 }
        }
        resource "aws_apigatewayv2_route_response" "connect" {
          api_id             = aws_apigatewayv2_api.ws.id
          route_id           = aws_apigatewayv2_route.connect.id
          route_response_key = "$default"
        }
        resource "aws_apigatewayv2_integration" "http" {
          api_id             = aws_apigatewayv2_api.ws.id
          integration_type   = "HTTP_PROXY"
          integration_method = "POST"
          integration_uri    = "https://example.com/hook"
        }
        resource "aws_apigatewayv2_route" "default" {
          api_id    = aws_apigatewayv2_api.ws.id
          route_key = "$default"
          target    = "integrations/${aws_apigatewayv2_integration.http.id}"
        }
        resource "aws_apigatewayv2_integration" "mock" {
          api_id           = aws_apigatewayv2_api.ws.id
          integration_type = "MOCK"
        }
        resource "aws_apigatewayv2_route" "ping" {
          api_id    = aws_apigatewayv2_api.ws.id
          route_key = "ping"
          target    = "integrations/${aws_apigatewayv2_integration.mock.id}"
        }
        resource "aws_apigatewayv2_deployment" "d" {
          api_id = aws_apigatewayv2_api.ws.id
        }
        resource "aws_lambda_permission" "p" {
          function_name = aws_lambda_function.connect.function_name
        }
        resource "aws_lambda_permission" "q" {
          function_name = aws_lambda_function.connect.function_name
        }
        """,
    )
    assert api.stage == "prod"
    assert api.stage_variables == {"table": "conn", "size": "3"}
    routes = {r.key: r for r in api.routes}
    assert routes["$connect"].route_response
    assert not routes["$default"].route_response
    assert routes["$default"].integration.kind == "http"
    assert routes["$default"].integration.url == "https://example.com/hook"
    assert routes["ping"].integration.kind == "mock"
    assert api.ignored == {"aws_apigatewayv2_deployment": 1, "aws_lambda_permission": 2}


def test_stage_option_picks_the_stage(tmp_path: Path) -> None:
    stages = """
        resource "aws_apigatewayv2_stage" "dev" {
          api_id          = aws_apigatewayv2_api.ws.id
          name            = "dev"
          stage_variables = { which = "dev" }
        }
        resource "aws_apigatewayv2_stage" "prod" {
          api_id          = aws_apigatewayv2_api.ws.id
          name            = "prod"
          stage_variables = { which = "prod" }
        }
        """
    assert read(tmp_path, stages, stage="prod").stage_variables == {"which": "prod"}
    other = read(tmp_path, stages, stage="qa")
    assert (other.stage, other.stage_variables) == ("qa", {})


def test_authorizers_request_and_jwt(tmp_path: Path) -> None:
    text = API.replace(
        '  target    = "integrations/',
        '  authorization_type = "CUSTOM"\n'
        "  authorizer_id = aws_apigatewayv2_authorizer.auth.id\n"
        '  target    = "integrations/',
    )
    extra = """
    resource "aws_lambda_function" "auth" {
      function_name = "chat-auth"
      filename      = data.archive_file.code.output_path
      handler       = "auth.handler"
      runtime       = "python3.12"
      timeout       = 5
    }
    resource "aws_apigatewayv2_authorizer" "auth" {
      api_id           = aws_apigatewayv2_api.ws.id
      authorizer_type  = "REQUEST"
      authorizer_uri   = aws_lambda_function.auth.invoke_arn
      identity_sources = ["route.request.querystring.token"]
      name             = "token-auth"
    }
    resource "aws_apigatewayv2_authorizer" "jwt" {
      api_id           = aws_apigatewayv2_api.ws.id
      authorizer_type  = "JWT"
      identity_sources = ["route.request.header.Authorization"]
      name             = "cognito"
      jwt_configuration {
        audience = ["client-1"]
        issuer   = "https://cognito-idp.us-east-1.amazonaws.com/pool"
      }
    }
    """
    write(tmp_path, {"main.tf": text + textwrap.dedent(extra)})
    api = terraform.read(tmp_path, ReadOptions())
    assert api.routes[0].authorizer == "token-auth"
    auth = api.authorizers["token-auth"]
    assert (auth.kind, auth.function, auth.identity_sources) == (
        "request",
        "chat-auth",
        ("route.request.querystring.token",),
    )
    assert api.functions["chat-auth"].timeout == 5.0
    jwt = api.authorizers["cognito"]
    assert (jwt.kind, jwt.issuer, jwt.audience) == (
        "jwt",
        "https://cognito-idp.us-east-1.amazonaws.com/pool",
        ("client-1",),
    )


# -- evaluation ----------------------------------------------------------------------------------


def test_variables_defaults_tfvars_and_vars(tmp_path: Path) -> None:
    variables = """
    variable "prefix" {
      default = "chat"
    }
    variable "size" {
      type = number
    }
    variable "debug" {
      type    = bool
      default = false
    }
    variable "tags" {
      type    = map(string)
      default = {}
    }
    variable "from_auto" {}
    variable "from_env" {}
    """
    write(
        tmp_path,
        {
            "terraform.tfvars": 'size = 1\nfrom_auto = "base"\n',
            "x.auto.tfvars": 'from_auto = "auto"\n',
            "prod.tfvars": "size = 5\n",
        },
    )
    found = read_env(
        tmp_path,
        """
        PREFIX = var.prefix
        SIZE = var.size
        DEBUG = var.debug
        TAG = var.tags["team"]
        AUTO = var.from_auto
        ENV = var.from_env
        """,
        variables,
        var_files=(tmp_path / "prod.tfvars",),
        vars={"debug": "true", "tags": '{ team = "core" }'},
        env={"TF_VAR_from_env": "from-env"},
    )
    assert found == {
        "PREFIX": "chat",
        "SIZE": "5",
        "DEBUG": "true",
        "TAG": "core",
        "AUTO": "auto",
        "ENV": "from-env",
    }


def test_vars_win_over_var_files(tmp_path: Path) -> None:
    write(tmp_path, {"a.tfvars": 'name = "file"\n'})
    found = read_env(
        tmp_path,
        "N = var.name\n",
        'variable "name" {}\n',
        var_files=(tmp_path / "a.tfvars",),
        vars={"name": "flag"},
    )
    assert found == {"N": "flag"}


def test_locals_references_and_interpolation(tmp_path: Path) -> None:
    found = read_env(
        tmp_path,
        """
        NAME   = local.name
        TABLE  = aws_dynamodb_table.c.name
        ARN    = aws_dynamodb_table.c.arn
        ID     = aws_dynamodb_table.c.id
        URL    = aws_apigatewayv2_stage.s.invoke_url
        WSS    = aws_apigatewayv2_api.ws.api_endpoint
        API    = aws_apigatewayv2_api.ws.id
        EXEC   = aws_apigatewayv2_api.ws.execution_arn
        MGMT   = "https://${aws_apigatewayv2_api.ws.id}.execute-api.${data.aws_region.r.name}.amazonaws.com/${aws_apigatewayv2_stage.s.name}"
        ACCT   = data.aws_caller_identity.me.account_id
        PART   = data.aws_partition.p.partition
        FN     = aws_lambda_function.connect.function_name
        FN_ARN = aws_lambda_function.connect.arn
        ESC    = "$${literal} %%{x}"
        MOD    = basename(path.module)
        WS     = terraform.workspace
        """,
        """
        locals {
          env  = "dev"
          name = "chat-${local.env}"
        }
        resource "aws_dynamodb_table" "c" {
          name     = "${local.name}-connections"
          hash_key = "id"
          attribute {
            name = "id"
            type = "S"
          }
        }
        resource "aws_apigatewayv2_stage" "s" {
          api_id = aws_apigatewayv2_api.ws.id
          name   = local.env
        }
        data "aws_region" "r" {}
        data "aws_caller_identity" "me" {}
        data "aws_partition" "p" {}
        provider "aws" {
          region = "eu-west-2"
        }
        """,
    )
    assert found == {
        "NAME": "chat-dev",
        "TABLE": "chat-dev-connections",
        "ARN": "arn:aws:dynamodb:eu-west-2:123456789012:table/chat-dev-connections",
        "ID": "chat-dev-connections",
        "URL": "wss://chat.execute-api.eu-west-2.amazonaws.com/dev",
        "WSS": "wss://chat.execute-api.eu-west-2.amazonaws.com",
        "API": "chat",
        "EXEC": "arn:aws:execute-api:eu-west-2:123456789012:chat",
        "MGMT": "https://chat.execute-api.eu-west-2.amazonaws.com/dev",
        "ACCT": "123456789012",
        "PART": "aws",
        "FN": "chat-connect",
        "FN_ARN": "arn:aws:lambda:eu-west-2:123456789012:function:chat-connect",
        "ESC": "${literal} %{x}",
        "MOD": tmp_path.resolve().name,
        "WS": "default",
    }


def test_region_and_account_from_options(tmp_path: Path) -> None:
    extra = 'data "aws_region" "r" {}\ndata "aws_caller_identity" "me" {}\n'
    found = read_env(
        tmp_path,
        "R = data.aws_region.r.name\nA = data.aws_caller_identity.me.account_id\n",
        extra,
        env={"AWS_REGION": "sa-east-1"},
        vars={"account_id": "111122223333"},
    )
    assert found == {"R": "sa-east-1", "A": "111122223333"}


def test_functions_operators_and_collections(tmp_path: Path) -> None:
    found = read_env(
        tmp_path,
        """
        FORMAT  = format("%s-%03d-%q-%v", "a", 7, "q", true)
        JOIN    = join(",", ["a", "b"], ["c"])
        LOOKUP  = lookup({ a = "x" }, "b", "fallback")
        REPLACE = replace("a-b-c", "-", "_")
        REGEX   = replace("v1.2", "/v(\\\\d)/", "w$1")
        TRIM    = trimprefix("dev-chat", "dev-")
        MERGE   = jsonencode(merge({ a = 1 }, { b = 2 }, { a = 3 }))
        UPPER   = upper(lower("AbC"))
        SPLIT   = element(split("/", "a/b/c"), 1)
        LENGTH  = length(concat([1], [2, 3]))
        COAL    = coalesce("", "second")
        CONCAT  = "${1 + 2 * 3}-${10 / 4}-${7 % 3}-${-2}"
        COMPARE = 2 > 1 && !(1 == 2) || false
        COND    = var.on ? "yes" : "no"
        FOR     = join(",", [for k, v in { a = 1, b = 2 } : "${k}=${v}" if v > 1])
        FOROBJ  = jsonencode({ for x in ["a", "b"] : x => upper(x) })
        SPLAT   = join(",", [{ n = "a" }, { n = "b" }][*].n)
        INDEX   = ["x", "y"][1]
        TRY     = try(local.missing, "tried")
        CAN     = can(local.missing)
        EXPAND  = max([3, 9, 4]...)
        KEYS    = join(",", keys({ b = 1, a = 2 }))
        TOSTR   = tostring(5)
        ONE     = one(["only"])
        SUBSTR  = substr("websocket", 0, 3)
        HEREDOC = <<-EOT
          hello ${var.who} $${literal} "quoted"
          EOT
        """,
        'variable "on" {\n  default = true\n}\nvariable "who" {\n  default = "you"\n}\n',
    )
    assert found == {
        "FORMAT": 'a-007-"q"-true',
        "JOIN": "a,b,c",
        "LOOKUP": "fallback",
        "REPLACE": "a_b_c",
        "REGEX": "w1.2",
        "TRIM": "chat",
        "MERGE": '{"a":3,"b":2}',
        "UPPER": "ABC",
        "SPLIT": "b",
        "LENGTH": "3",
        "COAL": "second",
        "CONCAT": "7-2.5-1--2",
        "COMPARE": "true",
        "COND": "yes",
        "FOR": "b=2",
        "FOROBJ": '{"a":"A","b":"B"}',
        "SPLAT": "a,b",
        "INDEX": "y",
        "TRY": "tried",
        "CAN": "false",
        "EXPAND": "9",
        "KEYS": "a,b",
        "TOSTR": "5",
        "ONE": "only",
        "SUBSTR": "web",
        "HEREDOC": 'hello you ${literal} "quoted"\n',
    }


def test_count_and_for_each_pick_one_or_none(tmp_path: Path) -> None:
    found = read_env(
        tmp_path,
        """
        ONE  = aws_dynamodb_table.on[0].name
        EACH = aws_dynamodb_table.each["main"].name
        """,
        """
        variable "enabled" {
          default = false
        }
        resource "aws_dynamodb_table" "on" {
          count    = var.enabled ? 0 : 1
          name     = "on-${count.index}"
          hash_key = "id"
          attribute {
            name = "id"
            type = "S"
          }
        }
        resource "aws_dynamodb_table" "off" {
          count    = var.enabled ? 1 : 0
          name     = "off"
          hash_key = "id"
        }
        resource "aws_dynamodb_table" "each" {
          for_each = toset(["main"])
          name     = "each-${each.key}-${each.value}"
          hash_key = "id"
          attribute {
            name = "id"
            type = "S"
          }
        }
        resource "aws_dynamodb_table" "none" {
          for_each = {}
          name     = "none"
          hash_key = "id"
        }
        """,
    )
    assert found == {"ONE": "on-0", "EACH": "each-main-main"}


def test_count_and_for_each_tables_in_the_model(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        resource "aws_dynamodb_table" "on" {
          count    = 1
          name     = "on"
          hash_key = "id"
          attribute {
            name = "id"
            type = "S"
          }
        }
        resource "aws_dynamodb_table" "off" {
          count    = 0
          name     = "off"
          hash_key = "id"
        }
        """,
    )
    assert [t.name for t in api.tables] == ["on"]


def test_local_modules_inputs_and_outputs(tmp_path: Path) -> None:
    module = """
    variable "name" {}
    variable "suffix" {
      default = "connections"
    }
    resource "aws_dynamodb_table" "t" {
      name     = "${var.name}-${var.suffix}"
      hash_key = "connectionId"
      attribute {
        name = "connectionId"
        type = "S"
      }
    }
    output "table_name" {
      value = aws_dynamodb_table.t.name
    }
    output "where" {
      value = basename(path.module)
    }
    """
    write(tmp_path, {"modules/table/main.tf": module})
    found = read_env(
        tmp_path,
        "TABLE = module.table.table_name\nWHERE = module.table.where\n",
        """
        module "table" {
          source = "./modules/table"
          name   = "chat"
        }
        module "registry" {
          source  = "terraform-aws-modules/s3-bucket/aws"
          version = "4.0.0"
        }
        """,
    )
    assert found == {"TABLE": "chat-connections", "WHERE": "table"}
    api = terraform.read(tmp_path, ReadOptions())
    assert [t.name for t in api.tables] == ["chat-connections"]
    assert api.tables[0].origin.what == "module.table.aws_dynamodb_table.t"
    assert api.ignored == {"module terraform-aws-modules/s3-bucket/aws": 1}


def test_the_api_and_functions_may_live_in_a_module(tmp_path: Path) -> None:
    write(tmp_path / "modules" / "ws", {"main.tf": API.replace('"chat"', "var.name")})
    write(tmp_path / "modules" / "ws", {"vars.tf": 'variable "name" {}\n'})
    (tmp_path / "main.tf").write_text('module "ws" {\n  source = "./modules/ws"\n  name = "m"\n}\n')
    api = terraform.read(tmp_path, ReadOptions())
    assert api.name == "m"
    assert api.functions["chat-connect"].code_root == (tmp_path / "modules/ws/src").resolve()
    assert api.routes[0].origin.what == "module.ws.aws_apigatewayv2_route.connect"


def test_overrides_answer_any_reference(tmp_path: Path) -> None:
    found = read_env(
        tmp_path,
        "SECRET = data.aws_ssm_parameter.s.value\nOUT = module.remote.url\n",
        """
        data "aws_ssm_parameter" "s" {
          name = "/chat/secret"
        }
        module "remote" {
          source = "git::https://example.com/x.git"
        }
        """,
        vars={"data.aws_ssm_parameter.s.value": "shh", "module.remote.url": "https://x"},
    )
    assert found == {"SECRET": "shh", "OUT": "https://x"}


def test_filename_override_names_the_source_folder(tmp_path: Path) -> None:
    text = API.replace("data.archive_file.code.output_path", '"dist/connect.zip"')
    (tmp_path / "handlers").mkdir()
    write(tmp_path, {"main.tf": text})
    options = ReadOptions(vars={"aws_lambda_function.connect.filename": "handlers"})
    api = terraform.read(tmp_path, options)
    assert api.functions["chat-connect"].code_root == (tmp_path / "handlers").resolve()


def test_other_data_sources_and_functions_without_routes_are_counted(tmp_path: Path) -> None:
    api = read(
        tmp_path,
        """
        data "aws_iam_policy_document" "p" {
          statement {
            actions = ["dynamodb:*"]
            resources = [data.aws_ssm_parameter.unknown.arn]
          }
        }
        resource "aws_lambda_function" "cron" {
          function_name = "cron"
          handler       = "cron.handler"
        }
        resource "aws_apigatewayv2_api" "http" {
          name          = "rest"
          protocol_type = "HTTP"
        }
        resource "aws_apigatewayv2_route" "http" {
          api_id    = aws_apigatewayv2_api.http.id
          route_key = "GET /"
        }
        """,
    )
    assert api.ignored == {
        "data.aws_iam_policy_document": 1,
        "aws_lambda_function without a route": 1,
        "aws_apigatewayv2_api": 1,
        "aws_apigatewayv2_route": 1,
    }


# -- errors --------------------------------------------------------------------------------------


def test_unknown_data_source_attribute_names_the_override(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "main.tf": with_env("S = data.aws_ssm_parameter.s.value\n")
            + 'data "aws_ssm_parameter" "s" {\n  name = "/x"\n}\n'
        },
    )
    with pytest.raises(InfraError) as caught:
        terraform.read(tmp_path, ReadOptions())
    assert str(caught.value) == (
        f"{tmp_path.resolve() / 'main.tf'}:20: data.aws_ssm_parameter.s.value: hubbub can't know"
        " 'value' of data.aws_ssm_parameter.s before it exists in AWS;"
        ' pass --var "data.aws_ssm_parameter.s.value=VALUE"'
    )


def test_a_variable_without_value_names_the_flag(tmp_path: Path) -> None:
    write(tmp_path, {"main.tf": with_env("S = var.secret\n") + 'variable "secret" {}\n'})
    with pytest.raises(InfraError) as caught:
        terraform.read(tmp_path, ReadOptions())
    assert str(caught.value) == (
        f"{tmp_path.resolve() / 'main.tf'}:36: var.secret: has no value;"
        " pass --var secret=VALUE or a --var-file"
    )


@pytest.mark.parametrize(
    ("variables", "extra", "message"),
    [
        ("S = local.nope\n", "", "local.nope: no local value 'nope'"),
        ("S = var.nope\n", "", "var.nope: no variable 'nope' is declared"),
        (
            "S = aws_s3_bucket.b.bucket_domain_name\n",
            'resource "aws_s3_bucket" "b" {}\n',
            "can't know 'bucket_domain_name' of aws_s3_bucket.b",
        ),
        (
            "S = aws_dynamodb_table.nope.name\n",
            'resource "aws_dynamodb_table" "t" {}\n',
            "no aws_dynamodb_table.nope in these files",
        ),
        ("S = nothing.here\n", "", "no resource type or name 'nothing'"),
        ("S = unknownfn(1)\n", "", "hubbub does not evaluate the function unknownfn()"),
        ('S = lookup({}, "k")\n', "", "lookup(): \"no key 'k' and no default\""),
        ("S = 1 / 0\n", "", "division by zero"),
        ('S = "a" + 1\n', "", "bad operands for +"),
        ("S = 1 ? 2 : 3\n", "", "a condition must be true or false"),
        ("S = { a = 1 }.b\n", "", "has no attribute 'b'"),
        ("S = [1][5]\n", "", "has no element 5"),
        ("S = local.a\n", "locals {\n  a = local.b\n  b = local.a\n}\n", "refers to itself"),
        ("S = module.none.x\n", "", "no module 'none' in these files"),
        (
            "S = module.reg.x\n",
            'module "reg" {\n  source = "hashicorp/x/aws"\n}\n',
            "module.reg is not a local folder; hubbub reads only local modules;"
            ' pass --var "module.reg.x=VALUE"',
        ),
        (
            "S = module.loc.x\n",
            'module "loc" {\n  source = "./loc"\n}\n',
            "no .tf files in that folder",
        ),
        ("S = count.index\n", "", "count is not available here"),
        ('S = "%{if true}x%{endif}"\n', "", "hubbub does not evaluate template directives"),
        ("S = try(local.a, local.b)\n", "", "no argument of try() could be evaluated"),
    ],
)
def test_expression_errors(tmp_path: Path, variables: str, extra: str, message: str) -> None:
    write(tmp_path, {"main.tf": with_env(variables) + extra})
    with pytest.raises(InfraError) as caught:
        terraform.read(tmp_path, ReadOptions())
    assert message in str(caught.value)
    assert caught.value.origin.file == (tmp_path / "main.tf").resolve()


def test_count_of_two_is_an_error(tmp_path: Path) -> None:
    e = error(tmp_path, 'resource "aws_dynamodb_table" "t" {\n  count = 2\n  name = "t"\n}\n')
    assert "main.tf:32: count = 2: is 2; hubbub imports a resource once or not at all" in str(e)


def test_for_each_of_two_is_an_error(tmp_path: Path) -> None:
    e = error(tmp_path, 'resource "aws_dynamodb_table" "t" {\n  for_each = toset(["a", "b"])\n}\n')
    assert 'for_each = toset(["a", "b"]): has 2 elements' in str(e)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('protocol_type              = "WEBSOCKET"', 'protocol_type = "HTTP"'),
            'no aws_apigatewayv2_api with protocol_type = "WEBSOCKET"',
        ),
        (
            ("data.archive_file.code.output_path", '"other.zip"'),
            "filename = other.zip: no archive_file data source builds this zip",
        ),
        (
            ("filename      = data.archive_file.code.output_path", 's3_bucket = "b"'),
            "s3_bucket: the code is not in a local file",
        ),
        (
            ("filename      = data.archive_file.code.output_path", 'image_uri = "x"'),
            "image_uri: hubbub runs handlers from source folders, not images",
        ),
        (
            ('source_dir  = "${path.module}/src"', ""),
            "source: hubbub runs an archive_file made of source_dir or source_file",
        ),
        (
            (
                "aws_lambda_function.connect.invoke_arn",
                '"arn:aws:lambda:us-east-1:1:function:gone"',
            ),
            "no aws_lambda_function named 'gone' in these files",
        ),
        (('"AWS_PROXY"', '"VPC_LINK"'), 'integration_type = "VPC_LINK": must be AWS_PROXY'),
        (
            ('target    = "integrations/${aws_apigatewayv2_integration.connect.id}"', ""),
            "target: a route needs a target",
        ),
        (
            (
                "integration_uri  = aws_lambda_function.connect.invoke_arn",
                'integration_uri = "arn:aws:apigateway:us-east-1:sqs:path/1/q"',
            ),
            "an AWS service integration (sqs) can't run locally",
        ),
        (
            ('route_key = "$connect"', 'route_key = "$connect"\n  authorization_type = "CUSTOM"'),
            "authorizer_id: does not name an aws_apigatewayv2_authorizer",
        ),
        (('name                       = "chat"', 'name = "chat"\n  x = {'), "not valid HCL"),
    ],
)
def test_structure_errors(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    write(tmp_path, {"main.tf": API.replace(*change)})
    with pytest.raises(InfraError) as caught:
        terraform.read(tmp_path, ReadOptions())
    assert message in str(caught.value)


def test_aws_iam_routes_run_and_are_counted(tmp_path: Path) -> None:
    iam = 'route_key = "$connect"\n  authorization_type = "AWS_IAM"'
    write(tmp_path, {"main.tf": API.replace('route_key = "$connect"', iam)})
    api = terraform.read(tmp_path, ReadOptions())
    assert api.routes[0].authorizer is None
    assert api.ignored == {"authorization_type AWS_IAM (not checked locally)": 1}


def test_two_websocket_apis_are_an_error(tmp_path: Path) -> None:
    e = error(
        tmp_path,
        'resource "aws_apigatewayv2_api" "b" {\n  name = "b"\n  protocol_type = "WEBSOCKET"\n}\n',
    )
    assert "several WebSocket APIs (aws_apigatewayv2_api.ws, aws_apigatewayv2_api.b)" in str(e)


def test_bad_vars_are_errors(tmp_path: Path) -> None:
    extra = 'variable "n" {\n  type = number\n}\nvariable "b" {\n  type = bool\n}\n'
    write(tmp_path, {"main.tf": with_env("N = var.n\nB = var.b\n") + extra})
    with pytest.raises(InfraError, match=r"var\.n=x: not a number"):
        terraform.read(tmp_path, ReadOptions(vars={"n": "x", "b": "true"}))
    with pytest.raises(InfraError, match=r"var\.b=yes: not true or false"):
        terraform.read(tmp_path, ReadOptions(vars={"n": "1", "b": "yes"}))


def test_missing_var_file_and_tfvars_with_references(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"main.tf": with_env("N = var.n\n") + 'variable "n" {}\n', "r.tfvars": "n = local.x\n"},
    )
    with pytest.raises(InfraError, match=r"no such \.tfvars file"):
        terraform.read(tmp_path, ReadOptions(var_files=(tmp_path / "none.tfvars",)))
    with pytest.raises(InfraError, match="a variable's value can't refer to other values"):
        terraform.read(tmp_path, ReadOptions(var_files=(tmp_path / "r.tfvars",)))


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match=r"no \.tf files"):
        terraform.read(tmp_path, ReadOptions())


def test_json_syntax_files_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "extra.tf.json").write_text('{"resource": {}}')
    assert read(tmp_path).ignored == {".tf.json file (JSON syntax, not read)": 1}
    with pytest.raises(InfraError, match=r"not its JSON syntax \(\.tf\.json\)"):
        terraform.read(tmp_path / "extra.tf.json", ReadOptions())


def test_resources_outside_the_api_are_not_evaluated(tmp_path: Path) -> None:
    """A subnet per availability zone (count over an AWS account's data) and a function whose
    name comes from a registry module are only counted, never evaluated."""
    api = read(
        tmp_path,
        """
        data "aws_availability_zones" "azs" {}
        resource "aws_subnet" "s" {
          count = length(data.aws_availability_zones.azs.names)
        }
        module "naming" {
          source = "cloudposse/label/null"
        }
        resource "aws_lambda_function" "worker" {
          function_name = module.naming.id
          handler       = "worker.handler"
        }
        """,
    )
    assert api.ignored == {
        "aws_subnet": 1,
        "data.aws_availability_zones": 1,
        "aws_lambda_function without a route": 1,
        "module cloudposse/label/null": 1,
    }


def test_keyword_object_keys(tmp_path: Path) -> None:
    found = read_env(tmp_path, 'K = jsonencode({ in = 1, for = "x" })\n')
    assert found == {"K": '{"in":1,"for":"x"}'}


def test_bad_hcl_in_a_list_var(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"main.tf": with_env("L = var.l[0]\n") + 'variable "l" {\n  type = list(string)\n}\n'},
    )
    assert read_env(
        tmp_path,
        "L = var.l[0]\n",
        'variable "l" {\n  type = list(string)\n}\n',
        vars={"l": '["a"]'},
    ) == {"L": "a"}
    with pytest.raises(InfraError, match=r"var\.l=\[: not a list\(string\)"):
        terraform.read(tmp_path, ReadOptions(vars={"l": "["}))


@pytest.mark.parametrize(
    ("variables", "extra", "message"),
    [
        ('S = "x".y\n', "", "can't read 'y' of a string"),
        ("S = 5[0]\n", "", "can't index a number"),
        ("S = !3\n", "", "not a bool"),
        ('S = -"a"\n', "", "not a number"),
        ('S = { (["a"]) = 2 }\n', "", "not a key"),
        (
            "S = aws_dynamodb_table.t[0]\n",
            'resource "aws_dynamodb_table" "t" {}\n',
            "aws_dynamodb_table.t is a single resource, not a list",
        ),
        (
            "S = module.m.nope\n",
            'module "m" {\n  source = "./m"\n}\n',
            "module.m has no output 'nope'",
        ),
        (
            "S = module.m.out\n",
            'module "m" {\n  source = "./m"\n}\n',
            "var.need: has no value; give module.m the input need",
        ),
    ],
)
def test_more_expression_errors(tmp_path: Path, variables: str, extra: str, message: str) -> None:
    write(tmp_path, {"m/main.tf": 'variable "need" {}\noutput "out" {\n  value = var.need\n}\n'})
    write(tmp_path, {"main.tf": with_env(variables) + extra})
    with pytest.raises(InfraError) as caught:
        terraform.read(tmp_path, ReadOptions())
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'resource "aws_apigatewayv2_authorizer" "a" {\n  api_id = aws_apigatewayv2_api.ws.id\n'
            '  authorizer_type = "JWT"\n}\n',
            "jwt_configuration: missing",
        ),
        (
            'resource "aws_apigatewayv2_authorizer" "a" {\n  api_id = aws_apigatewayv2_api.ws.id\n'
            '  authorizer_type = "TOKEN"\n}\n',
            'authorizer_type = "TOKEN": must be REQUEST or JWT',
        ),
        (
            'resource "aws_apigatewayv2_route" "again" {\n  api_id = aws_apigatewayv2_api.ws.id\n'
            '  route_key = "$connect"\n'
            '  target = "integrations/${aws_apigatewayv2_integration.connect.id}"\n}\n',
            "$connect: route defined twice",
        ),
        ('resource "aws_dynamodb_table" "t" {\n  name = "t"\n}\n', "hash_key: missing"),
        (
            'resource "aws_dynamodb_table" "t" {\n  name = "t"\n  hash_key = "id"\n'
            '  attribute {\n    name = "id"\n    type = "X"\n  }\n}\n',
            'type = "X": an attribute type is S, N or B',
        ),
        (
            'resource "aws_dynamodb_table" "t" {\n  name = "t"\n  hash_key = "id"\n'
            '  global_secondary_index {\n    name = "g"\n    hash_key = "id"\n'
            '    projection_type = "SOME"\n  }\n}\n',
            'projection_type = "SOME": unknown',
        ),
    ],
)
def test_more_structure_errors(tmp_path: Path, extra: str, message: str) -> None:
    assert message in str(error(tmp_path, extra))


def test_a_tfvars_file_with_blocks_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"main.tf": API, "bad.tfvars": 'x = 1\nresource "a" "b" {}\n'})
    with pytest.raises(InfraError, match=r"a \.tfvars file holds no blocks"):
        terraform.read(tmp_path, ReadOptions(var_files=(tmp_path / "bad.tfvars",)))


def test_a_filename_override_must_be_a_folder(tmp_path: Path) -> None:
    write(tmp_path, {"main.tf": API})
    options = ReadOptions(vars={"aws_lambda_function.connect.filename": "missing"})
    with pytest.raises(
        InfraError, match=r"aws_lambda_function\.connect\.filename=missing: not a folder"
    ):
        terraform.read(tmp_path, options)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40))
@settings(max_examples=60, deadline=None)
def test_any_quoted_string_evaluates_to_itself(text: str) -> None:
    """A Terraform string literal (quoted, with ${ and %{ escaped) evaluates to its text."""
    literal = json.dumps(text, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")
    attribute = hcl.parse_expression(literal, Path("test.tf"))
    assert Evaluator(lambda name, at: None).attribute(attribute) == text
