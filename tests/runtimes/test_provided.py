"""provided.al2023 / provided.al2: a ``bootstrap`` executable speaks the Lambda Runtime API.

Three real clients: AWS's own Python runtime interface client (``awslambdaric``, from PyPI), a
shell script with curl written like AWS's custom-runtime tutorial, and a Rust program using only
the standard library (compiled here with rustc; crates.io, where the lambda_runtime crate lives,
is out of reach).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hubbub.testing import run_gateway
from tests.runtimes.helpers import ask, config, connect, write

RIC_HANDLER = """
import json, os

def fn(event, context):
    return {"statusCode": 200, "body": json.dumps({
        "client": "awslambdaric",
        "route": event["requestContext"]["routeKey"],
        "request": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
        "name": context.function_name,
        "trace": os.environ.get("_X_AMZN_TRACE_ID", ""),
        "exec": os.environ.get("AWS_EXECUTION_ENV"),
    })}
"""


async def test_awslambdaric_as_a_provided_bootstrap(tmp_path: Path) -> None:
    code = tmp_path / "ric"
    write(code / "handler.py", RIC_HANDLER)
    # As a container image's entry point runs it: exec python -m awslambdaric handler.fn
    write(
        code / "bootstrap",
        f"""
        #!/bin/sh
        exec {sys.executable} -m awslambdaric handler.fn
        """,
        executable=True,
    )
    cfg = config(
        tmp_path,
        {
            "hello": """
                handler = "handler.fn"
                runtime = "provided.al2023"
                code = "ric"
                route_response = true
                timeout = 10
            """
        },
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        first = await ask(ws, {"action": "hello"})
        second = await ask(ws, {"action": "hello"})
    assert first["client"] == "awslambdaric"
    assert first["route"] == "hello"
    assert first["name"] == "hubbub-dev-hello"
    assert 0 < first["remaining"] <= 10_000
    assert first["request"] != second["request"]
    assert first["trace"].startswith("Root=1-")
    assert first["exec"] is None  # custom runtimes have no AWS_EXECUTION_ENV


SHELL_BOOTSTRAP = """
#!/bin/bash
set -euo pipefail

# Initialization - load function handler
source $LAMBDA_TASK_ROOT/"$(echo $_HANDLER | cut -d. -f1).sh"

# Processing
while true
do
  HEADERS="$(mktemp)"
  # Get an event. The HTTP request will block until one is received
  EVENT_DATA=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")

  # Extract request ID by scraping response headers received above
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)

  # Run the handler function from the script
  RESPONSE=$($(echo "$_HANDLER" | cut -d. -f2) "$EVENT_DATA")

  # Send the response
  curl -sS "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" \\
    -d "$RESPONSE" > /dev/null
done
"""

SHELL_HANDLER = """
function handler () {
  EVENT_DATA=$1
  echo "shell handler got ${#EVENT_DATA} bytes" 1>&2
  echo '{"statusCode": 200, "body": "hello from bash"}'
}
"""


@pytest.mark.skipif(shutil.which("curl") is None, reason="the tutorial's bootstrap uses curl")
async def test_a_shell_bootstrap_like_the_custom_runtime_tutorial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = tmp_path / "sh"
    write(code / "bootstrap", SHELL_BOOTSTRAP, executable=True)
    write(code / "function.sh", SHELL_HANDLER)
    cfg = config(
        tmp_path,
        {
            "hello": """
                handler = "function.handler"
                runtime = "provided.al2"
                code = "sh"
                route_response = true
            """
        },
    )
    caplog.set_level("INFO", logger="hubbub.function")
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        assert await ask(ws, {"action": "hello"}) == "hello from bash"
        assert await ask(ws, {"action": "hello"}) == "hello from bash"
    lines = [r for r in caplog.records if r.getMessage().startswith("shell handler got")]
    assert len(lines) == 2
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["function"] == "hubbub-dev-hello"
    assert len(fields["requestId"]) == 36  # the invocation's, though the line does not say it


RUST_BOOTSTRAP = r"""
// A Lambda custom runtime with the standard library only: HTTP/1.1 over TcpStream.
use std::env;
use std::io::{Read, Write};
use std::net::TcpStream;

fn call(addr: &str, method: &str, path: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("runtime API");
    let head = format!(
        "{} /2018-06-01/runtime/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        method, path, addr, body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers") + 4;
    (String::from_utf8_lossy(&raw[..split]).to_string(), raw[split..].to_vec())
}

fn main() {
    let addr = env::var("AWS_LAMBDA_RUNTIME_API").expect("AWS_LAMBDA_RUNTIME_API");
    let handler = env::var("_HANDLER").unwrap_or_default();
    loop {
        let (headers, event) = call(&addr, "GET", "invocation/next", b"");
        let id = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                let wanted = k.eq_ignore_ascii_case("lambda-runtime-aws-request-id");
                if wanted { Some(v.trim().to_string()) } else { None }
            })
            .expect("request id");
        println!("{} rust handler {} got {} bytes", id, handler, event.len());
        let body = format!("{{\"statusCode\": 200, \"body\": \"rust saw {} bytes\"}}", event.len());
        call(&addr, "POST", &format!("invocation/{}/response", id), body.as_bytes());
    }
}
"""


@pytest.mark.skipif(
    shutil.which("rustc") is None, reason="rustc is not installed: no Rust bootstrap to build"
)
async def test_a_rust_bootstrap_built_here(tmp_path: Path) -> None:
    code = tmp_path / "rust"
    source = write(tmp_path / "main.rs", RUST_BOOTSTRAP)
    code.mkdir()
    subprocess.run(
        ["rustc", "--edition", "2021", "-o", str(code / "bootstrap"), str(source)],
        check=True,
        timeout=300,
    )
    cfg = config(
        tmp_path,
        {
            "hello": """
                handler = "bootstrap.handler"
                runtime = "provided.al2023"
                code = "rust"
                route_response = true
            """
        },
    )
    async with run_gateway(cfg) as gw, connect(gw.websocket_url) as ws:
        reply = await ask(ws, {"action": "hello", "data": "x"})
    assert reply.startswith("rust saw ")
    assert int(reply.split()[2]) > 100  # the whole event
