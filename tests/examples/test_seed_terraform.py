"""examples/seed-terraform end to end: the seed's Terraform served by hubbub as it is, its Node.js
handler run unchanged with the real aws-sdk v2 (npm ci from the committed lock), moto's DynamoDB
with the table made from the Terraform, and the seed's chat page in real Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import websockets
from playwright.async_api import Browser, Page, async_playwright

from hubbub.config import load_config
from hubbub.testing import run_gateway
from tests.helpers import TIME_SCALE, eventually
from tests.runtimes.node.seed_modules import seed_node_modules

pytestmark = [
    pytest.mark.node,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed-terraform"
TABLE = "seed-chat-connections"
TIMEOUT_MS = 15_000 * TIME_SCALE


def _chromium() -> tuple[str, list[str]]:
    spec = importlib.util.spec_from_file_location(
        "ensure_browser", ROOT / "scripts" / "ensure_browser.py"
    )
    assert spec is not None
    assert spec.loader is not None
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    path = os.environ.get("HUBBUB_CHROMIUM") or helper.ensure_chromium()
    if not path:
        pytest.skip("no Chromium (run `sudo apt-get install chromium` or set HUBBUB_CHROMIUM)")
    return path, list(helper.CHROMIUM_ARGS)


@pytest.fixture
def dynamodb() -> Iterator[str]:
    """moto's DynamoDB, started as `python3 dev.py seed` starts it: the Terraform's tables made."""
    process = subprocess.Popen(
        [sys.executable, "scripts/local_dynamodb.py", "--tables-from", str(SEED)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first, second = process.stdout.readline(), process.stdout.readline()
        assert first.startswith("dynamodb http://"), first
        assert f"created {TABLE}" in second, second
        yield first.split()[1]
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@contextlib.asynccontextmanager
async def _browser() -> AsyncIterator[Browser]:
    path, args = _chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, args=args)
        try:
            yield browser
        finally:
            await browser.close()


async def _open_chat(browser: Browser, url: str) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(url)
    await page.click("#connect")
    await page.wait_for_selector("#log li.status:has-text('connected')")
    return page


async def _say(page: Page, text: str) -> None:
    await page.fill("#message", text)
    await page.click("#send")


async def _sees(page: Page, text: str) -> None:
    await page.wait_for_selector(f"#log li:not(.status):has-text('{text}')")


async def test_two_tabs_chat_and_a_tab_closed_abruptly_is_cleaned_up(
    tmp_path: Path,
    dynamodb: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_node_modules()
    # As `python3 dev.py seed` runs it: the endpoint in hubbub's environment reaches the function.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb)
    table = boto3.resource(
        "dynamodb",
        endpoint_url=dynamodb,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    ).Table(TABLE)

    def rows() -> set[str]:
        return {item["connectionId"] for item in table.scan()["Items"]}

    config = load_config(
        SEED,
        env={},
        overrides={
            "server.port": 0,
            "management.port": 0,
            "management.tls_port": 0,
            "management.state_dir": str(tmp_path / "state"),
            "static.dir": str(SEED / "client"),
        },
    )
    caplog.set_level("INFO", logger="hubbub.function")
    async with run_gateway(config) as gw, _browser() as browser:
        page = gw.http_url + "/"
        alice = await _open_chat(browser, page)
        bob = await _open_chat(browser, page)
        await eventually(lambda: len(rows()) == 2, message="both tabs in the table")

        await _say(alice, "hello bob")
        await _sees(alice, "hello bob")
        await _sees(bob, "hello bob")
        await _say(bob, "hi alice")
        await _sees(alice, "hi alice")

        # A third tab, crashed: the renderer dies with its WebSocket, no close handshake.
        before = rows()
        carol = await _open_chat(browser, page)
        carol_id = await eventually(lambda: rows() - before, message="the third tab's row")
        (gone,) = carol_id
        session = await carol.context.new_cdp_session(carol)
        # The target dies instead of answering: do not wait for the answer.
        crash = asyncio.ensure_future(session.send("Page.crash"))
        # hubbub runs $disconnect for it, whose delete removes the row.
        await eventually(lambda: gone not in rows(), message="$disconnect of the crashed tab")

        # API Gateway's $disconnect is best effort: a row can outlive its connection. Put it
        # back; the next broadcast gets 410 Gone for it, and the handler's cleanup deletes it.
        table.put_item(Item={"connectionId": gone})
        await _say(alice, "anyone left?")
        await _sees(bob, "anyone left?")
        await eventually(lambda: gone not in rows(), message="the stale row deleted after 410")
        assert rows() == before
        crash.cancel()
        with contextlib.suppress(BaseException):
            await crash
    stale = [r for r in caplog.records if f"Found stale connection, deleting {gone}" in r.message]
    assert len(stale) == 1
    fields: dict[str, Any] = stale[0].fields  # type: ignore[attr-defined]
    assert fields["function"] == "seed-chat"


async def test_dev_py_seed_runs_it_all(tmp_path: Path) -> None:
    """`python3 dev.py seed`, as the README gives it (ports moved): npm ci, the DynamoDB with
    the table, hubbub serving the .tf folder; two clients chat; Ctrl-C stops all of it."""
    seed_node_modules()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "dev.py", "seed", "--port", "0", "--management-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, for Ctrl-C below
    )
    assert process.stdout is not None
    seen: list[str] = []
    out = ""
    try:
        while not (line := process.stdout.readline()).startswith("hubbub: websocket"):
            assert line, "".join(seen)
            seen.append(line)
        url = line.split()[2]
        assert any("tables: created seed-chat-connections" in s for s in seen), seen
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            await a.send(json.dumps({"action": "sendmessage", "data": "through dev.py seed"}))
            for ws in (a, b):
                frame = await asyncio.wait_for(ws.recv(), 20 * TIME_SCALE)
                assert frame == "through dev.py seed"
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        try:
            out = process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    assert process.returncode in (0, 130), "".join(seen) + out
    with pytest.raises(ProcessLookupError):  # nothing of it is left: DynamoDB, hubbub, node
        os.killpg(process.pid, 0)
