"""``python -m bench.import_startup``: from a template to the first 101 (goal: at most 1 s).

Writes a SAM template with ten routes, each a function in its own folder (its own ``app.py`` and
``helper.py``: the isolated imports of issue 14's code roots), runs ``hubbub serve --config
template.yaml`` as a fresh process, and measures from the process start to the first completed
WebSocket handshake (101), and the server's CPU time by then (Linux: steadier than the wall
clock on a busy machine). Repeated ``--runs`` times; prints each run and the medians.

hubbub's modules are compiled to bytecode first, as ``pip install`` does: a checkout run with
``PYTHONDONTWRITEBYTECODE`` (or a read-only tree) would otherwise compile all of them on every
start, about 0.15 s of CPU that an installed hubbub never spends.
``--format serverless`` writes the same API as a serverless.yml (one service folder, a
``functions/f<i>/app.py`` handler each), ``--format terraform`` as a ``main.tf`` (an
``archive_file`` per function folder).

    python -m bench.import_startup [--runs 5] [--routes 10] [--format sam|serverless|terraform]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

ROUTE = """\
  Route{i}:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: {key}
      Target: !Join ['/', [integrations, !Ref Integ{i}]]
  Integ{i}:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/\
functions/${{Fn{i}.Arn}}/invocations
  Fn{i}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/f{i}/
      Handler: app.handler
      Environment:
        Variables:
          TABLE: !Ref Table
"""

HEAD = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: bench-import
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Api
      StageName: dev
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: connectionId, AttributeType: S}]
      KeySchema: [{AttributeName: connectionId, KeyType: HASH}]
  Role:
    Type: AWS::IAM::Role
"""


SLS_HEAD = """\
service: bench-import
provider:
  name: aws
  runtime: python3.12
  stage: ${opt:stage, 'dev'}
  timeout: 10
  environment:
    TABLE: !Ref Table
resources:
  Resources:
    Table:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: ${self:service}-${sls:stage}-connections
        AttributeDefinitions: [{AttributeName: connectionId, AttributeType: S}]
        KeySchema: [{AttributeName: connectionId, KeyType: HASH}]
    Role:
      Type: AWS::IAM::Role
functions:
"""

SLS_FUNCTION = """\
  f{i}:
    handler: functions/f{i}/app.handler
    events:
      - websocket: '{key}'
"""

TF_HEAD = """\
variable "stage" {{
  default = "dev"
}}
resource "aws_apigatewayv2_api" "api" {{
  name                       = "bench-import"
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"
}}
resource "aws_apigatewayv2_stage" "stage" {{
  api_id = aws_apigatewayv2_api.api.id
  name   = var.stage
}}
resource "aws_dynamodb_table" "table" {{
  name     = "bench-${{var.stage}}-connections"
  hash_key = "connectionId"
  attribute {{
    name = "connectionId"
    type = "S"
  }}
}}
resource "aws_iam_role" "role" {{
  name = "bench"
}}
"""

TF_FUNCTION = """\
data "archive_file" "f{i}" {{
  type        = "zip"
  source_dir  = "${{path.module}}/functions/f{i}"
  output_path = "${{path.module}}/build/f{i}.zip"
}}
resource "aws_lambda_function" "f{i}" {{
  function_name = "f{i}"
  filename      = data.archive_file.f{i}.output_path
  handler       = "app.handler"
  runtime       = "python3.12"
  timeout       = 10
  environment {{
    variables = {{
      TABLE = aws_dynamodb_table.table.name
    }}
  }}
}}
resource "aws_apigatewayv2_integration" "f{i}" {{
  api_id           = aws_apigatewayv2_api.api.id
  integration_type = "AWS_PROXY"
  integration_uri  = aws_lambda_function.f{i}.invoke_arn
}}
resource "aws_apigatewayv2_route" "f{i}" {{
  api_id    = aws_apigatewayv2_api.api.id
  route_key = "{key}"
  target    = "integrations/${{aws_apigatewayv2_integration.f{i}.id}}"
}}
"""


def write_project(folder: Path, routes: int, fmt: str = "sam") -> Path:
    """The project's files; the path to give ``--config``."""
    keys = ["$connect", "$disconnect", "$default"] + [f"action{i}" for i in range(routes - 3)]
    if fmt == "serverless":
        return _write_serverless(folder, keys)
    if fmt == "terraform":
        return _write_terraform(folder, keys)
    text = HEAD
    for i, key in enumerate(keys):
        text += ROUTE.format(i=i, key=key)
        code = folder / "functions" / f"f{i}"
        code.mkdir(parents=True)
        (code / "helper.py").write_text(f"NAME = 'f{i}'\n")
        (code / "app.py").write_text(
            "import helper\n\n\ndef handler(event, context):\n"
            "    return {'statusCode': 200, 'body': helper.NAME}\n"
        )
    template = folder / "template.yaml"
    template.write_text(text)
    return template


def _write_serverless(folder: Path, keys: list[str]) -> Path:
    text = SLS_HEAD
    for i, key in enumerate(keys):
        text += SLS_FUNCTION.format(i=i, key=key)
        code = folder / "functions" / f"f{i}"
        code.mkdir(parents=True)
        # One service folder is every function's code root, as Serverless packages it.
        (code / "app.py").write_text(
            f"def handler(event, context):\n    return {{'statusCode': 200, 'body': 'f{i}'}}\n"
        )
    config = folder / "serverless.yml"
    config.write_text(text)
    return config


def _write_terraform(folder: Path, keys: list[str]) -> Path:
    text = TF_HEAD.format()
    for i, key in enumerate(keys):
        text += TF_FUNCTION.format(i=i, key=key)
        code = folder / "functions" / f"f{i}"
        code.mkdir(parents=True)
        (code / "helper.py").write_text(f"NAME = 'f{i}'\n")
        (code / "app.py").write_text(
            "import helper\n\n\ndef handler(event, context):\n"
            "    return {'statusCode': 200, 'body': helper.NAME}\n"
        )
    (folder / "main.tf").write_text(text)
    return folder


async def handshake(url: str) -> None:
    async with websockets.connect(url):
        pass


def compile_hubbub() -> None:
    """hubbub's bytecode, as an installed hubbub has it (see the module docstring)."""
    import hubbub

    compileall.compile_dir(Path(hubbub.__file__).parent, quiet=1)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far; None where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_101(template: Path, state: Path) -> tuple[float, float, float | None]:
    """Seconds from the process start to its listener line, to the first 101, and the
    server's CPU seconds by then."""
    env = {
        **os.environ,
        "HUBBUB_MANAGEMENT_TLS_PORT": "0",
        "HUBBUB_MANAGEMENT_STATE_DIR": str(state),
    }
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubbub.cli",
            "serve",
            "--config",
            str(template),
            "--port",
            "0",
            "--management-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        listening = time.perf_counter() - start
        if "websocket" not in line:
            raise RuntimeError(f"hubbub did not start: {line!r}")
        url = line.split()[2]
        asyncio.run(handshake(url))
        connected = time.perf_counter() - start
        return listening, connected, cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stdout is not None:
            proc.stdout.close()


_LABELS = {"sam": "template", "serverless": "serverless.yml", "terraform": "Terraform"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_startup")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--routes", type=int, default=10)
    parser.add_argument("--format", choices=("sam", "serverless", "terraform"), default="sam")
    args = parser.parse_args(argv)
    compile_hubbub()
    with tempfile.TemporaryDirectory() as tmp:
        template = write_project(Path(tmp), args.routes, args.format)
        results = []
        cpus = []
        for run in range(args.runs):
            listening, connected, cpu = first_101(template, Path(tmp) / "state")
            results.append(connected)
            cpu_text = "" if cpu is None else f", server CPU {cpu:.2f} s"
            if cpu is not None:
                cpus.append(cpu)
            print(
                f"run {run + 1}: listening {listening:.3f} s, first 101 {connected:.3f} s{cpu_text}"
            )
    median = statistics.median(results)
    if cpus:
        print(f"server CPU to the first 101: median {statistics.median(cpus):.2f} s")
    verdict = "met" if median <= 1.0 else "MISSED"
    print(
        f"{_LABELS[args.format]} with {args.routes} routes -> first 101: median {median:.3f} s "
        f"(goal <= 1 s: {verdict})"
    )
    return 0 if median <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
