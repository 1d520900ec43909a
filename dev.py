#!/usr/bin/env python3
"""hubbub's developer entry point: one file, standard library only, any Python 3.11+.

    python3 dev.py chat [ARGS...]    run the chat example (extra args go to `hubbub serve`)
    python3 dev.py seed [ARGS...]    the Node.js + Terraform seed example, local DynamoDB
    python3 dev.py test [ARGS...]    lint, type-check, run the test suite (ARGS go to pytest)
    python3 dev.py lint              ruff check, ruff format --check, mypy
    python3 dev.py serve [ARGS...]   run `hubbub serve ARGS` from .venv (any example's config)
    python3 dev.py bench [ARGS...]   run the benchmark harness (`python -m bench ARGS`)
    python3 dev.py setup             only create/refresh .venv
    python3 dev.py lock              re-resolve the pinned test environment (constraints.txt)

Every command first makes sure `.venv` exists and holds the project installed editable with its
`dev` extra, every package at the exact version `constraints.txt` pins (pip, setuptools and the
linters included), so the tests run against the same set on every machine and every day. pip runs
again only when pyproject.toml or constraints.txt changed since the last successful install
(their SHA-256 is kept in `.venv/.hubbub-stamp`). `lock` resolves `.[dev]` afresh in a scratch
virtualenv and rewrites constraints.txt: run it, then `python3 dev.py test`, and commit both.

`test` also provides what the suite needs from outside Python: a Redis server (one already on
127.0.0.1:6379, else a private one it starts and stops) exported as HUBBUB_TEST_REDIS_URL,
Debian's Chromium exported as HUBBUB_CHROMIUM, and Debian's nginx exported as HUBBUB_NGINX (the
trusted-proxy tests run one). All are installed with apt-get when missing and we are root or have
sudo.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".hubbub-stamp"
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "constraints.txt"
# Installed first and from the lock too: the editable build runs without build isolation, so the
# build backend is the pinned one rather than whatever the registry serves that day.
BOOTSTRAP = ["pip", "setuptools", "wheel"]
CHAT_CONFIG = "examples/chat/hubbub.toml"
SEED = "examples/seed-terraform"
SEED_FUNCTION = ROOT / SEED / "functions" / "chat"
# The Node.js function of the benchmark's runtime rows; its pinned JavaScript SDK v3 is also what
# tests/runtimes/node/test_aws_sdk_v3.py runs.
BENCH_NODE_FUNCTION = ROOT / "bench" / "functions" / "node"

USAGE = __doc__.split("\n\n")[1] if __doc__ else ""


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"==> error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def tool(name: str) -> str:
    return str(BIN / name)


# --------------------------------------------------------------------------- virtualenv


def _apt_install(package: str) -> bool:
    """Install a Debian package when we are root or have sudo; False when impossible."""
    if not shutil.which("apt-get"):
        return False
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo"]
    else:
        return False
    env_cmd = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive"]
    for cmd in (
        [*env_cmd, "apt-get", "update", "-q"],
        [*env_cmd, "apt-get", "install", "-y", "-q", package],
    ):
        say(" ".join(cmd))
        if subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL).returncode != 0:
            return False
    os.environ["HUBBUB_APT_UPDATED"] = "1"
    return True


def _venv_python_works() -> bool:
    python = BIN / "python"
    if not python.exists():
        return False
    try:
        probe = "import sys; assert sys.version_info >= (3, 11)"
        return subprocess.run([str(python), "-c", probe], check=False).returncode == 0
    except OSError:
        return False


def _create_venv() -> None:
    clear = VENV.exists()  # a broken/partial venv: rebuild it in place
    say(f"creating {VENV.name} with {sys.executable} ({sys.version.split()[0]})")
    cmd = [sys.executable, "-m", "venv", *(["--clear"] if clear else []), str(VENV)]
    if subprocess.run(cmd, check=False).returncode == 0:
        return
    # Debian's system Python ships venv's pip bootstrap separately (python3-venv).
    say("venv failed (Debian needs the python3-venv package); installing it")
    if _apt_install(f"python3.{sys.version_info.minor}-venv") or _apt_install("python3-venv"):
        cmd = [sys.executable, "-m", "venv", "--clear", str(VENV)]
        if subprocess.run(cmd, check=False).returncode == 0:
            return
    fail(
        "could not create .venv: install Python's venv module "
        "(Debian/Ubuntu: `sudo apt-get install python3-venv`) and try again"
    )


def _inputs_hash() -> str:
    digest = hashlib.sha256(PYPROJECT.read_bytes())
    digest.update(LOCK.read_bytes() if LOCK.exists() else b"")
    return digest.hexdigest()


def _pip(python: str) -> list[str]:
    return [python, "-m", "pip", "--disable-pip-version-check"]


def ensure_venv() -> None:
    """Create .venv and (re)install `.[dev]` when missing or when pyproject.toml changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py may be started by any python3)
        fail(f"Python 3.11+ is required, this is {sys.version.split()[0]}")
    if not _venv_python_works():
        _create_venv()
    if not LOCK.exists():
        fail(f"{LOCK.name} is missing: run `python3 dev.py lock` to create it")
    wanted = _inputs_hash()
    installed = STAMP.read_text().strip() if STAMP.exists() else ""
    if installed == wanted and (BIN / "hubbub").exists():
        return
    say(f"installing (pip install -c {LOCK.name} -e '.[dev]')")
    pip = _pip(tool("python"))
    constrained = [*pip, "install", "--quiet", "--constraint", str(LOCK)]
    for cmd in (
        [*constrained, *BOOTSTRAP],
        [*constrained, "--no-build-isolation", "--editable", ".[dev]"],
    ):
        if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
            STAMP.unlink(missing_ok=True)
            fail(f"`{' '.join(cmd)}` failed")
    STAMP.write_text(wanted + "\n")


# --------------------------------------------------------------------------- running steps


class Runner:
    """Runs child processes in the foreground the way a shell does.

    Ctrl-C reaches the child directly (same process group); we only note it, wait for the child to
    finish its own cleanup, then stop (a second Ctrl-C kills a child that lingers). SIGTERM is
    forwarded to the running child.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._child: subprocess.Popen[bytes] | None = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted and self._child is not None and self._child.poll() is None:
            self._child.kill()  # a second Ctrl-C: the child did not stop by itself
        self.interrupted = True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        if self._child is not None and self._child.poll() is None:
            self._child.terminate()

    def run(self, cmd: Sequence[str], env: dict[str, str] | None = None) -> int:
        if self.interrupted:
            return 130
        self._child = subprocess.Popen(list(cmd), cwd=ROOT, env=env)
        old_int = signal.signal(signal.SIGINT, self._on_sigint)
        old_term = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            return self._child.wait()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
            self._child = None


def _steps_lint() -> list[tuple[str, list[str]]]:
    return [
        ("ruff check", [tool("ruff"), "check", "."]),
        ("ruff format", [tool("ruff"), "format", "--check", "."]),
        ("mypy", [tool("mypy")]),
    ]


def run_steps(steps: list[tuple[str, list[str]]], env: dict[str, str] | None = None) -> int:
    """Run every step (a lint failure does not hide test results); 0 only if all passed."""
    runner = Runner()
    failed: list[str] = []
    for name, cmd in steps:
        say(name)
        code = runner.run(cmd, env)
        if runner.interrupted:
            say(f"interrupted during {name}")
            return 130
        if name == "pytest" and code == 5:
            say("pytest collected no tests: counting that as a failure")
        if code != 0:
            failed.append(f"{name} (exit {code})")
    if failed:
        say("FAILED: " + ", ".join(failed))
        return 1
    say("all checks passed")
    return 0


# --------------------------------------------------------------------------- commands


def cmd_chat(args: list[str]) -> int:
    hubbub = tool("hubbub")
    say(f"chat: hubbub serve --config {CHAT_CONFIG} -> open http://127.0.0.1:8080/ in two tabs")
    os.chdir(ROOT)
    os.execv(hubbub, [hubbub, "serve", "--config", CHAT_CONFIG, *args])


def _npm_ci(folder: Path) -> None:
    """`npm ci` from the committed package-lock.json, unless node_modules already matches it."""
    installed = folder / "node_modules" / ".package-lock.json"
    lock = folder / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        fail("npm is missing: install Node.js 18 or later (Debian: `apt-get install nodejs npm`)")
    say(f"npm ci in {folder.relative_to(ROOT)}")
    cmd = [npm, "ci", "--no-audit", "--no-fund"]
    if subprocess.run(cmd, cwd=folder, check=False).returncode != 0:
        fail(f"`npm ci` failed in {folder}")


def cmd_seed(args: list[str]) -> int:
    """The seed recipe: moto's DynamoDB with the Terraform's tables, then hubbub serving the .tf
    folder; its Node.js function reaches the local DynamoDB through AWS_ENDPOINT_URL_DYNAMODB."""
    if shutil.which("node") is None:
        fail("node is missing: install Node.js 18 or later (Debian: `apt-get install nodejs npm`)")
    _npm_ci(SEED_FUNCTION)
    say(f"local DynamoDB (moto) with the tables of {SEED}/main.tf")
    # Out of reach of Ctrl-C (its own session): hubbub's shutdown still runs $disconnect handlers
    # that write to it. It ends when we close its stdin, or when we die and the pipe closes.
    dynamodb = subprocess.Popen(
        [
            tool("python"),
            "scripts/local_dynamodb.py",
            "--until-stdin-closes",
            "--tables-from",
            SEED,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert dynamodb.stdout is not None
        lines = [dynamodb.stdout.readline().strip() for _ in range(2)]
        if not lines[0].startswith("dynamodb "):
            fail("the local DynamoDB did not start (scripts/local_dynamodb.py)")
        endpoint = lines[0].split()[1]
        say(f"{lines[1]} at {endpoint}")
        env = dict(os.environ)
        env["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        env.setdefault("HUBBUB_STATIC_DIR", "client")  # the chat page, relative to the folder
        say(f"hubbub serve --config {SEED}/ -> open http://127.0.0.1:8080/ in two tabs")
        return Runner().run([tool("hubbub"), "serve", "--config", f"{SEED}/", *args], env)
    finally:
        assert dynamodb.stdin is not None
        dynamodb.stdin.close()
        try:
            dynamodb.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dynamodb.kill()
            dynamodb.wait()


def cmd_serve(args: list[str]) -> int:
    hubbub = tool("hubbub")
    os.chdir(ROOT)
    os.execv(hubbub, [hubbub, "serve", *args])


def cmd_lock(args: list[str]) -> int:
    """Resolve `.[dev]` afresh (newest versions the ranges in pyproject.toml allow) and pin it."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hubbub-lock-") as scratch:
        venv = Path(scratch) / "venv"
        say(f"resolving .[dev] in a scratch virtualenv ({venv})")
        if subprocess.run([sys.executable, "-m", "venv", str(venv)], check=False).returncode:
            fail("could not create the scratch virtualenv")
        pip = _pip(str(venv / "bin" / "python"))
        for cmd in (
            [*pip, "install", "--quiet", "--upgrade", *BOOTSTRAP],
            [*pip, "install", "--quiet", "--no-build-isolation", ".[dev]"],
        ):
            if subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0:
                fail(f"`{' '.join(cmd)}` failed")
        frozen = subprocess.run(
            [*pip, "freeze", "--all"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    pins = sorted(
        (line for line in frozen if line and not line.lower().startswith("hubbub")),
        key=str.lower,
    )
    header = [
        "# The exact versions the tests, linters and type checker run with (pip constraints).",
        "# dev.py installs .venv from this file; users' ranges stay in pyproject.toml.",
        "# Refresh: python3 dev.py lock, then python3 dev.py test, then commit.",
        f"# Resolved with Python {sys.version.split()[0]}.",
    ]
    LOCK.write_text("\n".join([*header, *pins]) + "\n")
    say(f"wrote {LOCK.name}: {len(pins)} packages")
    return 0


def cmd_bench(args: list[str]) -> int:
    python = tool("python")
    os.chdir(ROOT)
    os.execv(python, [python, "-m", "bench", *args])


def cmd_lint(args: list[str]) -> int:
    return run_steps(_steps_lint())


def cmd_test(args: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    from ensure_browser import chromium_version, ensure_chromium
    from ensure_nginx import ensure_nginx
    from ensure_redis import RedisUnavailable, ensure_redis

    env = dict(os.environ)
    with contextlib.ExitStack() as cleanup:
        if env.get("HUBBUB_TEST_REDIS_URL"):
            say(f"redis: using {env['HUBBUB_TEST_REDIS_URL']} (from the environment)")
        else:
            try:
                url, stop = ensure_redis()
            except RedisUnavailable as exc:
                fail(f"redis: {exc}")
            cleanup.callback(stop)
            env["HUBBUB_TEST_REDIS_URL"] = url
            say(f"redis: using {url.removeprefix('redis://')}")

        chromium = env.get("HUBBUB_CHROMIUM") or ensure_chromium()
        if chromium:
            env["HUBBUB_CHROMIUM"] = chromium
            say(f"chromium: {chromium_version(chromium) or chromium}")
        else:
            say("chromium: none (browser tests cannot run)")

        if shutil.which("node") and shutil.which("npm"):
            # The real AWS SDKs for JavaScript the Node.js runtime tests run (v2, v3).
            for folder in (SEED_FUNCTION, BENCH_NODE_FUNCTION):
                _npm_ci(folder)
        else:
            say("node: none (the Node.js runtime tests cannot run)")

        nginx = env.get("HUBBUB_NGINX") or ensure_nginx()
        if nginx:
            env["HUBBUB_NGINX"] = nginx
            say(f"nginx: {nginx}")
        else:
            say("nginx: none (the trusted-proxy tests cannot run)")

        steps = [*_steps_lint(), ("pytest", [tool("pytest"), *args])]
        return run_steps(steps, env)


def cmd_setup(args: list[str]) -> int:
    say(f"{VENV.name} is ready")
    return 0


COMMANDS = {
    "chat": cmd_chat,
    "seed": cmd_seed,
    "serve": cmd_serve,
    "test": cmd_test,
    "lint": cmd_lint,
    "bench": cmd_bench,
    "setup": cmd_setup,
    "lock": cmd_lock,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"} or argv[0] not in COMMANDS:
        print(USAGE)
        return 0 if argv and argv[0] in {"-h", "--help", "help"} else 2
    command, args = argv[0], argv[1:]
    os.chdir(ROOT)
    if command != "lock":
        ensure_venv()
    return COMMANDS[command](args)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds, so a Redis we started is stopped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
