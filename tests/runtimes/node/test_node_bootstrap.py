"""nodejs18.x/20.x/22.x: unchanged Lambda handlers, run by hubbub's Node.js bootstrap
(src/hubbub/runtimes/node) against hubbub's own Lambda Runtime API, with the real ``node``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import websockets

from hubbub.testing import run_gateway
from tests.helpers import eventually
from tests.runtimes.helpers import ask, config, connect, write

pytestmark = [
    pytest.mark.node,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _route(handler: str, code: str = "fn", *, two_way: bool = True) -> str:
    return f"""
        handler = "{handler}"
        runtime = "nodejs20.x"
        code = "{code}"
        route_response = {"true" if two_way else "false"}
        timeout = 10
    """


def _function_records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r.getMessage(), getattr(r, "fields", {}))
        for r in caplog.records
        if r.name == "hubbub.function"
    ]


CJS = """
console.log("loading", "index.js");
exports.handler = async (event, context) => {
  console.log("handling %s", event.requestContext.routeKey);
  return { statusCode: 200, body: JSON.stringify({
    route: event.requestContext.routeKey,
    request: context.awsRequestId,
    name: context.functionName,
    version: context.functionVersion,
    arn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB,
    group: context.logGroupName,
    stream: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop,
    cwd: process.cwd(),
    pid: process.pid,
    trace: process.env._X_AMZN_TRACE_ID,
    childTrace: require("child_process").execFileSync("printenv", ["_X_AMZN_TRACE_ID"])
      .toString().trim(),
  }) };
};
"""

NESTED = """
module.exports.handlers = {
  main: async () => ({ statusCode: 200, body: "nested in lib/app.cjs" }),
};
"""


async def test_a_commonjs_handler_gets_lambdas_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "fn" / "index.js", CJS)
    write(tmp_path / "fn" / "lib" / "app.cjs", NESTED)
    cfg = config(
        tmp_path,
        {"hello": _route("index.handler"), "nested": _route("lib/app.handlers.main")},
    )
    caplog.set_level("INFO", logger="hubbub.function")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        first = await ask(ws, {"action": "hello"})
        second = await ask(ws, {"action": "hello"})
        nested = await ask(ws, {"action": "nested"})
    assert first["route"] == "hello"
    assert re.fullmatch(UUID, first["request"])
    assert first["request"] != second["request"]
    assert first["pid"] == second["pid"]  # the warm environment again
    assert first["name"] == "hubbub-dev-hello"
    assert first["version"] == "$LATEST"
    assert first["arn"].endswith(":function:hubbub-dev-hello")
    assert first["memory"] == "128"
    assert first["group"] == "/aws/lambda/hubbub-dev-hello"
    assert first["stream"]
    assert 0 < first["remaining"] <= 10_000
    assert first["waits"] is True
    assert first["cwd"] == str((tmp_path / "fn").resolve())
    # Lambda-Runtime-Trace-Id, fresh per invocation (protocol.invocation_answer's headers).
    trace = r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0"
    assert re.fullmatch(trace, first["trace"])
    assert first["trace"] != second["trace"]
    # Held in JavaScript, not by setenv (runtimes/node/trace_env.js): child processes see it.
    assert (first["childTrace"], second["childTrace"]) == (first["trace"], second["trace"])
    assert nested == "nested in lib/app.cjs"

    # console.* lines are Lambda's, tagged in hubbub's log with the function and request id.
    records = _function_records(caplog)
    init = [(m, f) for m, f in records if m.endswith("\tINFO\tloading index.js")]
    assert len(init) == 1
    assert re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\tundefined\tINFO\t", init[0][0])
    handled = [(m, f) for m, f in records if m.endswith("\tINFO\thandling hello")]
    assert [f["requestId"] for _, f in handled] == [first["request"], second["request"]]
    assert all(m.split("\t")[1] == f["requestId"] for m, f in handled)
    assert {f["function"] for _, f in handled} == {"hubbub-dev-hello"}


async def test_es_modules_mjs_and_type_module(tmp_path: Path) -> None:
    write(
        tmp_path / "esm" / "index.mjs",
        """
        import { setTimeout as sleep } from "node:timers/promises";
        import { env } from "node:process";
        export const handler = async (event) => {
          await sleep(1);
          const trace = env._X_AMZN_TRACE_ID.startsWith("Root=1-") ? "traced" : "untraced";
          return { statusCode: 200, body: `mjs: ${typeof require}, ${trace}` };
        };
        """,
    )
    write(tmp_path / "typed" / "package.json", '{"type": "module"}\n')
    write(
        tmp_path / "typed" / "src" / "app.js",
        """
        import { basename } from "node:path";
        export async function handler(event) {
          return { statusCode: 200, body: `type module: ${basename(import.meta.url)}` };
        }
        """,
    )
    cfg = config(
        tmp_path,
        {"mjs": _route("index.handler", "esm"), "typed": _route("src/app.handler", "typed")},
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        assert await ask(ws, {"action": "mjs"}) == "mjs: undefined, traced"
        assert await ask(ws, {"action": "typed"}) == "type module: app.js"


# The result object is changed by a timer after the callback: when the runtime waits for the
# event loop to empty, the reply shows the change; when it does not, it does not.
CALLBACKS = """
exports.waits = (event, context, callback) => {
  const result = { statusCode: 200, body: "callback sent before the timer" };
  callback(null, result);
  setTimeout(() => { result.body = "callback sent after the timer"; }, 50);
};
exports.sendsNow = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  const result = { statusCode: 200, body: "callback sent before the timer" };
  callback(null, result);
  setTimeout(() => { result.body = "callback sent after the timer"; }, 50);
};
exports.succeeds = (event, context) => {
  const result = { statusCode: 200, body: "succeed sent before the timer" };
  context.succeed(result);
  setTimeout(() => { result.body = "succeed sent after the timer"; }, 50);
};
exports.fails = (event, context, callback) => { callback(new TypeError("callback error")); };
"""


async def test_callback_handlers_and_callback_waits_for_empty_event_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "fn" / "cb.js", CALLBACKS)
    routes = {name: _route(f"cb.{name}") for name in ("waits", "sendsNow", "succeeds", "fails")}
    cfg = config(tmp_path, routes)
    caplog.set_level("INFO", logger="hubbub.function")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        assert await ask(ws, {"action": "waits"}) == "callback sent after the timer"
        assert await ask(ws, {"action": "sendsNow"}) == "callback sent before the timer"
        assert await ask(ws, {"action": "succeeds"}) == "succeed sent before the timer"
        failed = await ask(ws, {"action": "fails"})
    assert failed["message"] == "Internal server error"
    errors = [m for m, _ in _function_records(caplog) if "\tERROR\tInvoke Error \t" in m]
    assert len(errors) == 1
    logged = json.loads(errors[0].split("\tInvoke Error \t", 1)[1])
    assert logged["errorType"] == "TypeError"
    assert logged["errorMessage"] == "callback error"
    assert logged["stack"][0] == "TypeError: callback error"


ERRORS = """
exports.throws = async () => { throw new RangeError("out of range"); };
exports.rejectsLater = async () => {
  Promise.reject(new Error("nobody waits for me"));
  await new Promise((resolve) => setTimeout(resolve, 100));
  return { statusCode: 200, body: "not reached" };
};
exports.ok = async () => ({ statusCode: 200, body: `ok from ${process.pid}` });
exports.circular = async () => {
  const result = { statusCode: 200 };
  result.self = result;
  return result;
};
"""


async def test_errors_are_reported_like_lambda(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "fn" / "errors.js", ERRORS)
    cfg = config(
        tmp_path,
        {
            "throws": _route("errors.throws"),
            "rejects": _route("errors.rejectsLater"),
            "ok": _route("errors.ok"),
            "circular": _route("errors.circular"),
        },
    )
    caplog.set_level("INFO")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        thrown = await ask(ws, {"action": "throws"})
        rejected = await ask(ws, {"action": "rejects"})
        assert (await ask(ws, {"action": "ok"})).startswith("ok from ")
        circular = await ask(ws, {"action": "circular"})
        assert (await ask(ws, {"action": "circular"}))["message"] == "Internal server error"
    assert thrown["message"] == "Internal server error"
    assert rejected["message"] == "Internal server error"
    assert circular["message"] == "Internal server error"
    lines = [m for m, _ in _function_records(caplog)]
    thrown_line = next(m for m in lines if "\tERROR\tInvoke Error \t" in m)
    logged = json.loads(thrown_line.split("\tInvoke Error \t", 1)[1])
    assert (logged["errorType"], logged["errorMessage"]) == ("RangeError", "out of range")
    rejection = next(m for m in lines if "\tERROR\tUnhandled Promise Rejection \t" in m)
    logged = json.loads(rejection.split("\tUnhandled Promise Rejection \t", 1)[1])
    assert logged["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert logged["errorMessage"] == "Error: nobody waits for me"
    # hubbub's own record of the failed invocations carries the runtime's error type.
    text = caplog.text
    assert "RangeError" in text
    assert "Runtime.UnhandledPromiseRejection" in text
    # A result JSON cannot hold fails the invocation; the environment stays (asked twice above).
    unserializable = [m for m in lines if "Unable to stringify response body" in m]
    assert len(unserializable) == 2


async def test_init_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "fn" / "exports.js", "exports.other = async () => 1;\n")
    write(tmp_path / "fn" / "syntax.js", "exports.handler = async () => { return 1 +; };\n")
    write(tmp_path / "fn" / "needs.js", "require('not-installed-here');\n")
    cfg = config(
        tmp_path,
        {
            "missing": _route("nothere.handler"),
            "notfound": _route("exports.handler"),
            "syntax": _route("syntax.handler"),
            "dependency": _route("needs.handler"),
        },
    )
    caplog.set_level("INFO")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        for action in ("missing", "notfound", "syntax", "dependency"):
            reply = await ask(ws, {"action": action})
            assert reply["message"] == "Internal server error"
    failures = {
        r.fields["function"]: r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "function init failed"
    }
    assert failures["hubbub-dev-missing"]["errorType"] == "Runtime.ImportModuleError"
    assert "Cannot find module" in failures["hubbub-dev-missing"]["errorMessage"]
    assert failures["hubbub-dev-notfound"]["errorType"] == "Runtime.HandlerNotFound"
    assert (
        failures["hubbub-dev-notfound"]["errorMessage"]
        == "exports.handler is undefined or not exported"
    )
    assert failures["hubbub-dev-syntax"]["errorType"] == "Runtime.UserCodeSyntaxError"
    assert failures["hubbub-dev-syntax"]["errorMessage"].startswith("SyntaxError: ")
    assert failures["hubbub-dev-dependency"]["errorType"] == "Runtime.ImportModuleError"
    assert "not-installed-here" in failures["hubbub-dev-dependency"]["errorMessage"]


async def test_an_init_error_on_connect_refuses_the_handshake_with_502(tmp_path: Path) -> None:
    write(tmp_path / "fn" / "index.js", "exports.notTheHandler = async () => 1;\n")
    cfg = config(tmp_path, {"$connect": _route("index.handler", two_way=False)})
    async with run_gateway(cfg) as gw:
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(gw.websocket_url):
                pass
    assert info.value.response.status_code == 502


LATE = """
exports.handler = async (event) => {
  if (JSON.parse(event.body).late) {
    setTimeout(() => { throw new Error("late failure"); }, 10);
  }
  return { statusCode: 200, body: String(process.pid) };
};
"""


async def test_an_uncaught_exception_after_the_answer_ends_the_environment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "fn" / "late.js", LATE)
    cfg = config(tmp_path, {"go": _route("late.handler")})
    caplog.set_level("INFO", logger="hubbub.function")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        first = int(await ask(ws, {"action": "go", "late": True}))
        assert gw.route_factory is not None
        pools = list(gw.route_factory.runtimes.pools.values())
        # The throw is logged as Lambda logs it, and the process exits (not hangs) at once.
        await eventually(
            lambda: (
                any("\tERROR\tUncaught Exception \t" in m for m, _ in _function_records(caplog))
                and all(first not in pool.pids for pool in pools)
            ),
            message="the environment ended after its uncaught exception",
        )
        second = int(await ask(ws, {"action": "go"}))
    assert second != first
