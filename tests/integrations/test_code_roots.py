"""Per-function code roots (route keys code/runtime/layers/function/memory): each function
imports from its own folder and layers only, like separate Lambda functions."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import pytest
import websockets

from hubbub.config import load_config
from hubbub.errors import ConfigError
from hubbub.integrations.python import load_function
from hubbub.testing import run_gateway

HANDLER = """\
import os
import helper

shared = __import__("shared") if helper.USES_LAYER else None  # a layer's module, at import

def lambda_handler(event, context):
    return {"statusCode": 200, "body": json_reply(event)}

def json_reply(event):
    import json
    return json.dumps({
        "who": helper.WHO,
        "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "memory": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
        "shared": shared.VERSION if shared else None,
    })
"""


def _function(root: Path, folder: str, module: str, who: str, uses_layer: bool = False) -> None:
    code = root / folder
    code.mkdir(parents=True)
    (code / f"{module}.py").write_text(HANDLER)
    # Every function has its own "helper" module: the same name, other contents.
    (code / "helper.py").write_text(f"WHO = {who!r}\nUSES_LAYER = {uses_layer}\n")


def _config(tmp_path: Path) -> Path:
    _function(tmp_path, "functions/one", "lambda_function", "one", uses_layer=True)
    _function(tmp_path, "functions/two", "lambda_function", "two")
    _function(tmp_path, "functions/three", "lambda_function", "three")
    _function(tmp_path, "apps/a", "app", "app a")
    _function(tmp_path, "apps/b", "app", "app b")
    (tmp_path / "layers/common/python").mkdir(parents=True)
    (tmp_path / "layers/common/python/shared.py").write_text("VERSION = 'layer 1'\n")
    config = tmp_path / "hubbub.toml"
    routes = {
        "one": ("functions/one", "lambda_function", 'layers = ["layers/common"]\nmemory = 512'),
        "two": ("functions/two", "lambda_function", ""),
        "three": ("functions/three", "lambda_function", 'name = "Three"'),
        "a": ("apps/a", "app", 'runtime = "python3.12"'),
        "b": ("apps/b", "app", ""),
    }
    text = "[server]\nport = 0\n[management]\nport = 0\ntls = false\n"
    for key, (code, module, extra) in routes.items():
        text += textwrap.dedent(f"""
            [routes.{key}]
            handler = "{module}.lambda_handler"
            code = "{code}"
            route_response = true
        """)
        text += extra + "\n"
    config.write_text(text)
    return config


async def test_functions_with_modules_of_the_same_name_dont_see_each_other(
    tmp_path: Path,
) -> None:
    config = load_config(_config(tmp_path), env={})
    async with run_gateway(config) as gw:
        ws = await websockets.connect(gw.websocket_url)
        replies = {}
        for action in ("one", "two", "three", "a", "b"):
            await ws.send(json.dumps({"action": action}))
            replies[action] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.close()
    assert {k: v["who"] for k, v in replies.items()} == {
        "one": "one",
        "two": "two",
        "three": "three",
        "a": "app a",
        "b": "app b",
    }
    assert replies["one"]["shared"] == "layer 1"  # from its layer's python/ folder
    assert replies["one"]["memory"] == "512"
    assert replies["three"]["function"] == "Three"
    assert replies["two"]["function"] == "hubbub-dev-two"  # {api}-{stage}-{route} by default
    # Nothing of theirs is left where the next function (or the process) would find it.
    assert not {"helper", "shared", "lambda_function", "app"} & set(sys.modules)


def test_a_module_of_the_process_does_not_answer_for_the_functions_own(tmp_path: Path) -> None:
    _function(tmp_path, "f", "json", "mine")  # a function whose module shadows a stdlib name
    handler = load_function("json.lambda_handler", tmp_path / "f")
    assert json.loads(handler({}, None)["body"])["who"] == "mine"
    assert sys.modules["json"] is json  # the process keeps its own


def test_package_handlers_and_missing_ones(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "handlers"
    pkg.mkdir(parents=True)
    (pkg / "connect.py").write_text("from . import util\n\ndef handler(e, c):\n    return util.X\n")
    (pkg / "util.py").write_text("X = 'relative import'\n")
    handler = load_function("src/handlers/connect.handler", tmp_path, key="routes.x.handler")
    assert handler({}, None) == "relative import"
    with pytest.raises(ConfigError, match=r"routes.x.handler: no module 'nope'"):
        load_function("nope.handler", tmp_path, key="routes.x.handler")
    with pytest.raises(ConfigError, match=r"has no function 'missing'"):
        load_function("src/handlers/connect.missing", tmp_path, key="routes.x.handler")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(
        ConfigError,
        match=r"importing broken from .* failed at .*broken.py:1: RuntimeError: boom at import",
    ):
        load_function("broken.handler", tmp_path, key="routes.x.handler")


def _route_config(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "code").mkdir(exist_ok=True)
    config = tmp_path / "hubbub.toml"
    config.write_text(f'[routes.x]\nhandler = "app.handler"\ncode = "code"\n{extra}\n')
    return config


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'runtime = "java21"',
            "routes.\"x\".runtime: hubbub does not run 'java21' functions; it runs python3.x, "
            "nodejs18.x, nodejs20.x, nodejs22.x, provided.al2023, provided.al2",
        ),
        ('layers = ["nope"]', 'routes."x".layers[0]: '),
        ("memory = -1", 'routes."x".memory: must not be negative'),
        ("name = 3", 'routes."x".name: must be 1-64 letters'),
    ],
)
def test_function_key_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_route_config(tmp_path, extra), env={})
    assert message in str(caught.value)


def test_code_needs_a_folder_and_a_handler(tmp_path: Path) -> None:
    config = tmp_path / "hubbub.toml"
    config.write_text('[routes.x]\nhandler = "app.handler"\ncode = "missing"\n')
    with pytest.raises(ConfigError, match=r'routes."x".code: .*missing is not a folder'):
        load_config(config, env={})
    config.write_text('[routes.x]\nurl = "http://127.0.0.1:1/x"\ncode = "."\n')
    with pytest.raises(ConfigError, match=r'routes."x".code: only a handler = ... route'):
        load_config(config, env={})
