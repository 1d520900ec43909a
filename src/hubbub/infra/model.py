"""What an infrastructure file says about a WebSocket API, whatever format it came in.

Each format reader (cloudformation.py, serverless.py, terraform.py) resolves its own expressions
and returns an :class:`ImportedApi`; everything after that (the hubbub.toml it prints, the Config
it builds, the tables it creates) only sees this model. Every part keeps an :class:`Origin` so a
printed config and an error can say where it came from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hubbub.errors import ConfigError

Format = Literal["sam", "cloudformation", "serverless", "terraform"]
FORMAT_NAMES: tuple[str, ...] = ("sam", "cloudformation", "serverless", "terraform")


@dataclass(frozen=True)
class Origin:
    """Where a part was defined: a file, the line where the format allows, and what it is."""

    file: Path
    line: int | None = None
    what: str = ""  # e.g. "AWS::Serverless::Function ConnectFunction", "aws_lambda_function.x"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where} ({self.what})" if self.what else where


@dataclass(frozen=True)
class Function:
    """A Lambda function as the template defines it."""

    name: str  # unique within the API: FunctionName, else the logical id / resource address
    handler: str  # Lambda's spelling: "app.lambda_handler", "src/handlers/connect.handler"
    runtime: str  # "python3.12", "nodejs20.x", "provided.al2023"; "" when the file gives none
    code_root: Path  # absolute folder the handler path is relative to (CodeUri, source_dir, ...)
    origin: Origin
    layers: tuple[Path, ...] = ()  # absolute local layer folders, in the template's order
    environment: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds
    memory_mb: int | None = None


@dataclass(frozen=True)
class Integration:
    kind: Literal["lambda", "http", "mock"]
    origin: Origin
    function: str | None = None  # Function.name, for "lambda"
    url: str | None = None  # for "http" (HTTP and HTTP_PROXY)


@dataclass(frozen=True)
class Route:
    key: str  # "$connect", "sendMessage", ...
    integration: Integration
    origin: Origin
    route_response: bool = False  # a RouteResponse / routeResponseSelectionExpression exists
    authorizer: str | None = None  # Authorizer.name when the route uses one ($connect)


@dataclass(frozen=True)
class Authorizer:
    name: str
    kind: Literal["request", "jwt"]
    origin: Origin
    function: str | None = None  # Function.name, for "request"
    # API Gateway's spelling: "route.request.header.Auth", "route.request.querystring.token"
    identity_sources: tuple[str, ...] = ()
    issuer: str | None = None  # for "jwt"
    audience: tuple[str, ...] = ()


@dataclass(frozen=True)
class Index:
    name: str
    key_schema: tuple[tuple[str, Literal["HASH", "RANGE"]], ...]
    projection: Literal["ALL", "KEYS_ONLY", "INCLUDE"] = "ALL"
    non_key_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """A DynamoDB table, created locally with ``create_tables``."""

    name: str  # the resolved TableName (what !Ref / .name resolve to)
    key_schema: tuple[tuple[str, Literal["HASH", "RANGE"]], ...]
    attributes: dict[str, Literal["S", "N", "B"]]
    origin: Origin
    global_indexes: tuple[Index, ...] = ()
    local_indexes: tuple[Index, ...] = ()


@dataclass
class ImportedApi:
    """One WebSocket API and what it needs, resolved for one stage."""

    format: Format
    source: Path  # the file or folder that was read
    name: str
    origin: Origin
    route_selection_expression: str = "$request.body.action"
    stage: str = "dev"
    stage_variables: dict[str, str] = field(default_factory=dict)
    # The API's id as references to it resolve (Ref of the Api, aws_apigatewayv2_api.x.id):
    # URLs https://{api_id}.execute-api.{region}.amazonaws.com/{stage} are hubbub's own.
    api_id: str = ""
    region: str = "us-east-1"
    account_id: str = "123456789012"
    routes: list[Route] = field(default_factory=list)
    functions: dict[str, Function] = field(default_factory=dict)
    authorizers: dict[str, Authorizer] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    # What is not part of a WebSocket API, by type: {"AWS::IAM::Role": 2, "aws_s3_bucket": 1}
    ignored: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class ReadOptions:
    """What the user passes on top of the files (``hubbub import`` flags, ``[import]`` keys).

    Every reader has the signature ``read(path: Path, options: ReadOptions) -> ImportedApi``:
    ``hubbub.infra.cloudformation.read`` (SAM, CloudFormation, CDK's synthesized JSON),
    ``hubbub.infra.serverless.read`` and ``hubbub.infra.terraform.read``.
    """

    stage: str | None = None  # --stage / [import] stage; None: the file's own or "dev"
    parameters: Mapping[str, str] = field(default_factory=dict)  # CloudFormation Parameters
    vars: Mapping[str, str] = field(default_factory=dict)  # Terraform -var, serverless ${opt:..}
    var_files: tuple[Path, ...] = ()  # Terraform .tfvars files (absolute)
    env: Mapping[str, str] = field(default_factory=dict)  # what ${env:...} reads


class InfraError(ConfigError):
    """Something in an infrastructure file hubbub can't run locally or can't understand.

    The message names the file (and line where the format allows), the expression, and how to
    override it, e.g. ``template.yaml:42: {{resolve:ssm:/x}}: hubbub can't read SSM parameters;
    pass --parameter TableName=connections``.
    """

    def __init__(self, origin: Origin, expression: str, problem: str, hint: str = "") -> None:
        where = f"{origin.file}:{origin.line}" if origin.line else str(origin.file)
        text = f"{expression}: {problem}" if expression else problem
        super().__init__(where, f"{text}{f'; {hint}' if hint else ''}")
        self.origin = origin
        self.expression = expression
        self.hint = hint


@dataclass(frozen=True)
class ImportedConfig:
    """What an import gave the loaded configuration (``Config.imported``): its source file and
    format, the one-line summary of what was ignored, and the tables to create."""

    source: Path
    format: str
    summary: str  # "ignored: 2 AWS::IAM::Role, 1 AWS::S3::Bucket"
    create_tables: bool = False
    tables: tuple[Table, ...] = ()
