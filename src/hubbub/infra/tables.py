"""``[import] create_tables``: the template's DynamoDB tables, created in a local DynamoDB.

hubbub does not emulate DynamoDB: the tables are created (once; an existing table is left as it
is) in the endpoint the functions are given, ``AWS_ENDPOINT_URL_DYNAMODB`` or ``AWS_ENDPOINT_URL``
in ``[environment]``, with boto3. Without one of those it refuses, so a template never creates
tables in a real AWS account by accident.
"""

from __future__ import annotations

from typing import Any

from hubbub.config import Config
from hubbub.errors import ConfigError
from hubbub.infra.model import Index, Table

_ENDPOINT_KEYS = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")


def dynamodb_endpoint(config: Config) -> str:
    for key in _ENDPOINT_KEYS:
        value = config.environment.get(key)
        if value:
            return value
    raise ConfigError(
        "import.create_tables",
        "needs the local DynamoDB the functions use: set AWS_ENDPOINT_URL_DYNAMODB (or "
        "AWS_ENDPOINT_URL) in [environment], e.g. a moto server (see docs/importing.md); hubbub "
        "never creates tables in an AWS account",
    )


def create_tables(config: Config) -> list[str]:
    """Create the imported tables that don't exist yet; the names of those created."""
    assert config.imported is not None
    endpoint = dynamodb_endpoint(config)
    try:
        import boto3  # noqa: PLC0415 - optional dependency
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise ConfigError("import.create_tables", "needs boto3 (pip install boto3)") from exc
    env = config.environment
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=config.api.region,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "hubbub"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "hubbub"),
    )
    created = []
    for table in config.imported.tables:
        assert isinstance(table, Table)
        try:
            client.describe_table(TableName=table.name)
            continue
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise _error(table, endpoint, exc) from exc
        except BotoCoreError as exc:
            raise _error(table, endpoint, exc) from exc
        try:
            client.create_table(**table_request(table))
            created.append(table.name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise _error(table, endpoint, exc) from exc  # else: created meanwhile
    return created


def table_request(table: Table) -> dict[str, Any]:
    """CreateTable's parameters for ``table`` (on demand: no throughput to invent)."""
    request: dict[str, Any] = {
        "TableName": table.name,
        "KeySchema": _keys(table.key_schema),
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": kind}
            for name, kind in table.attributes.items()
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.global_indexes:
        request["GlobalSecondaryIndexes"] = [_index(i) for i in table.global_indexes]
    if table.local_indexes:
        request["LocalSecondaryIndexes"] = [_index(i) for i in table.local_indexes]
    return request


def _keys(schema: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"AttributeName": name, "KeyType": kind} for name, kind in schema]


def _index(index: Index) -> dict[str, Any]:
    projection: dict[str, Any] = {"ProjectionType": index.projection}
    if index.non_key_attributes:
        projection["NonKeyAttributes"] = list(index.non_key_attributes)
    return {"IndexName": index.name, "KeySchema": _keys(index.key_schema), "Projection": projection}


def _error(table: Table, endpoint: str, exc: Exception) -> ConfigError:
    return ConfigError(
        "import.create_tables", f"creating table {table.name} ({table.origin}) at {endpoint}: {exc}"
    )
