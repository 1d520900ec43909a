"""Real serverless.yml and Terraform projects (tests/infra/fixtures), read into the model and
served from their own files with create_tables against a local DynamoDB."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import boto3
import websockets

from hubbub.config import load_config
from hubbub.infra import serverless
from hubbub.infra.model import ReadOptions
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


def _hubbub_toml(tmp_path: Path, source: Path, dynamodb: str, extra: str = "") -> Path:
    config = tmp_path / "hubbub.toml"
    config.write_text(
        f"""
[import]
from = {json.dumps(str(source))}
stage = "local"
vars = {{ region = "us-west-2" }}
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


def _items(dynamodb: str, table: str) -> list[dict[str, object]]:
    client = boto3.client("dynamodb", endpoint_url=dynamodb, region_name="us-west-2")
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
