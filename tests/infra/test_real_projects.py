"""Real projects served from their own infrastructure files (tests/infra/fixtures), with
create_tables against a local DynamoDB, and real clients talking through them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import boto3
import pytest
import websockets

from hubbub.config import load_config
from hubbub.testing import run_gateway
from tests.helpers import eventually

FIXTURES = Path(__file__).parent / "fixtures"
CDK = FIXTURES / "cdk-websocket-chat" / "cdk.out" / "WebsocketChat.template.json"
SAM = FIXTURES / "websocket-sessions-management" / "template.yml"
SAM_CHAT = FIXTURES / "sam-websocket-chat" / "template.yaml"


def _hubbub_toml(tmp_path: Path, source: Path, dynamodb: str, extra: str = "") -> Path:
    """A hubbub.toml that keeps only local settings on top of the project's own file."""
    config = tmp_path / "hubbub.toml"
    config.write_text(
        f"""
[import]
from = {json.dumps(str(source))}
create_tables = true

[server]
port = 0

[management]
port = 0
tls_port = 0
state_dir = {json.dumps(str(tmp_path / "state"))}

[environment]
AWS_ENDPOINT_URL_DYNAMODB = "{dynamodb}"
{extra}
""",
        encoding="utf-8",
    )
    return config


def _table_items(dynamodb: str, name: str) -> list[dict[str, object]]:
    client = boto3.client("dynamodb", endpoint_url=dynamodb, region_name="us-east-1")
    return list(client.scan(TableName=name)["Items"])


async def test_cdk_chat_two_clients_chat_through_its_own_function_and_table(
    tmp_path: Path, dynamodb: str
) -> None:
    config = load_config(_hubbub_toml(tmp_path, CDK, dynamodb), env={})
    assert config.imported is not None
    assert config.imported.format == "cloudformation"
    assert config.imported.summary == (
        "ignored: 1 AWS::CDK::Metadata, 1 AWS::IAM::Policy, 1 AWS::IAM::Role"
    )
    table = "WebsocketChat-Connections827CEF2F"
    async with run_gateway(config) as gw:
        # create_tables made the template's table in the local DynamoDB, before any handler ran.
        assert _table_items(dynamodb, table) == []
        url = gw.websocket_url.rstrip("/")
        alice = await websockets.connect(f"{url}?name=alice")
        bob = await websockets.connect(f"{url}?name=bob")
        # lambda_chat.py's own put_item on $connect, in the local DynamoDB.
        await eventually(lambda: len(_table_items(dynamodb, table)) == 2, message="2 rows")
        names = {item["user_name"]["S"] for item in _table_items(dynamodb, table)}  # type: ignore[index]
        assert names == {"alice", "bob"}
        # Its sendmessage scans the table and posts to every other connection with boto3's
        # post_to_connection at https://{domainName}/{stage}.
        await alice.send(json.dumps({"action": "sendmessage", "msg": "hello bob"}))
        assert await asyncio.wait_for(bob.recv(), 10) == "alice: hello bob"
        await bob.send(json.dumps({"action": "sendmessage", "msg": "hi alice"}))
        assert await asyncio.wait_for(alice.recv(), 10) == "bob: hi alice"
        await bob.close()
        await eventually(lambda: len(_table_items(dynamodb, table)) == 1, message="$disconnect")
        await alice.close()


async def test_sam_chat_two_clients_chat_through_three_functions_named_app(
    tmp_path: Path, dynamodb: str
) -> None:
    """kensh/websocket-apigateway: three functions, each an ``app.py`` in its own CodeUri."""
    config = load_config(_hubbub_toml(tmp_path, SAM_CHAT, dynamodb), env={})
    assert config.imported is not None
    assert config.imported.format == "sam"
    assert config.imported.summary == "ignored: nothing"
    assert config.api.stage == "dev"
    codes = {
        key: route.function.code.name for key, route in config.routes.items() if route.function
    }
    assert codes == {
        "$connect": "onconnect",
        "$disconnect": "ondisconnect",
        "sendmessage": "sendmessage",
    }
    table = "simplechat_connections"
    async with run_gateway(config) as gw:
        a = await websockets.connect(gw.websocket_url)
        b = await websockets.connect(gw.websocket_url)
        await eventually(lambda: len(_table_items(dynamodb, table)) == 2, message="2 rows")
        # sendmessage scans the table and posts the data to every connection, the sender too.
        await a.send(json.dumps({"action": "sendmessage", "data": "hello from a"}))
        assert await asyncio.wait_for(a.recv(), 10) == "hello from a"
        assert await asyncio.wait_for(b.recv(), 10) == "hello from a"
        await b.send(json.dumps({"action": "sendmessage", "data": "hi a"}))
        assert await asyncio.wait_for(a.recv(), 10) == "hi a"
        assert await asyncio.wait_for(b.recv(), 10) == "hi a"
        await b.close()
        await eventually(lambda: len(_table_items(dynamodb, table)) == 1, message="$disconnect")
        await a.close()
    # --parameter / [import] parameters rename the table, for the functions and create_tables.
    renamed = _hubbub_toml(tmp_path, SAM_CHAT, dynamodb)
    renamed.write_text(
        renamed.read_text().replace(
            "create_tables = true", 'create_tables = true\nparameters = { TableName = "chat_b" }'
        )
    )
    config = load_config(renamed, env={})
    assert config.routes["$connect"].environment["TABLE_NAME"] == "chat_b"
    assert config.imported is not None
    assert [t.name for t in config.imported.tables] == ["chat_b"]


async def test_cdk_tables_are_created_once(tmp_path: Path, dynamodb: str) -> None:
    config = load_config(_hubbub_toml(tmp_path, CDK, dynamodb), env={})
    from hubbub.infra.tables import create_tables

    assert create_tables(config) == ["WebsocketChat-Connections827CEF2F"]
    assert create_tables(config) == []  # idempotent: the existing table is left alone


def test_sam_project_tables_with_their_indexes(tmp_path: Path, dynamodb: str) -> None:
    config = load_config(_hubbub_toml(tmp_path, SAM, dynamodb), env={})
    from hubbub.infra.tables import create_tables

    created = create_tables(config)
    assert sorted(created) == [
        "websocket-sessions-management-ConnectionsTable",
        "websocket-sessions-management-SessionsTable",
    ]
    client = boto3.client("dynamodb", endpoint_url=dynamodb, region_name="us-east-1")
    table = client.describe_table(TableName="websocket-sessions-management-ConnectionsTable")
    indexes = {i["IndexName"]: i for i in table["Table"]["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"connectionId-index", "lastSeen-index"}
    assert indexes["lastSeen-index"]["Projection"]["ProjectionType"] == "KEYS_ONLY"
    assert [k["AttributeName"] for k in indexes["lastSeen-index"]["KeySchema"]] == [
        "active",
        "lastSeen",
    ]


async def test_sam_project_runs_its_own_handlers(tmp_path: Path, dynamodb: str) -> None:
    """The SAM project's $connect is AWS_IAM with a Cognito identity, which hubbub does not
    emulate: its own onConnect handler runs and refuses (401), as it is written to do; its
    $disconnect queries the template's index in the local DynamoDB."""
    config = load_config(_hubbub_toml(tmp_path, SAM, dynamodb), env={})
    assert config.imported is not None
    assert config.imported.format == "sam"
    assert "1 AuthorizationType AWS_IAM (not checked locally)" in config.imported.summary
    assert "1 AWS::Cognito::IdentityPool" in config.imported.summary
    routes = config.routes
    assert set(routes) == {"$connect", "$disconnect", "teleprinter"}
    teleprinter = routes["teleprinter"]
    api_url = teleprinter.environment["API_URL"]
    assert api_url.endswith(".execute-api.us-east-1.amazonaws.com/Prod")
    assert api_url.removeprefix("https://").split("/")[0] in config.api.aliases
    assert teleprinter.function is not None
    assert teleprinter.function.memory == 128
    assert teleprinter.timeout is None  # 600 s is beyond API Gateway's 29 s integration limit
    async with run_gateway(config) as gw:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(gw.websocket_url)
        assert refused.value.response.status_code == 401
