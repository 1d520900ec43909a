"""Config loading: defaults, TOML, HUBBUB_* variables, flags; every error names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.config import build_config, load_config
from hubbub.errors import ConfigError

FULL = """
[api]
name = "realtime-api"
stage = "dev"
route_selection_expression = "$request.body.action"

[server]
host = "127.0.0.1"
port = 8080

[management]
host = "127.0.0.1"
port = 8081

[environment]
WEBSOCKET_ENDPOINT = "http://127.0.0.1:8081/dev"

[routes."$connect"]
handler = "app.handler"
[routes."$disconnect"]
handler = "app.handler"
[routes."sendMessage"]
handler = "app.handler"
[routes."echo"]
handler = "app.echo"
route_response = true

[limits]
idle_timeout = 600
max_duration = 7200
max_frame_bytes = 32768
max_message_bytes = 131072
handler_timeout = 29

[static]
dir = "public"
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "public").mkdir(exist_ok=True)
    path = tmp_path / "hubbub.toml"
    path.write_text(text)
    return path


def test_the_issue_example_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, FULL), env={})
    assert config.api.name == "realtime-api"
    assert config.routes["echo"].route_response is True
    assert config.routes["$connect"].handler == "app.handler"
    assert config.environment["WEBSOCKET_ENDPOINT"] == "http://127.0.0.1:8081/dev"
    assert config.static.dir == tmp_path / "public"
    assert config.base_dir == tmp_path


def test_defaults_follow_aws() -> None:
    config = build_config({}, base_dir=Path("."))
    assert config.api.stage == "dev"
    assert config.limits.idle_timeout == 600
    assert config.limits.max_duration == 7200
    assert config.limits.max_frame_bytes == 32 * 1024
    assert config.limits.max_message_bytes == 128 * 1024
    assert config.limits.handler_timeout == 29
    assert config.server.compression is False


def test_env_overrides_file_and_flags_override_env(tmp_path: Path) -> None:
    path = _write(tmp_path, FULL)
    config = load_config(
        path, env={"HUBBUB_SERVER_PORT": "9000", "HUBBUB_LIMITS_IDLE_TIMEOUT": "5"}
    )
    assert config.server.port == 9000
    assert config.limits.idle_timeout == 5
    config = load_config(path, env={"HUBBUB_SERVER_PORT": "9000"}, overrides={"server.port": 9100})
    assert config.server.port == 9100


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nport = 'x'", "server.port"),
        ("[server]\nprot = 1", "server.prot"),
        ("[nonsense]\na = 1", "nonsense"),
        ("[limits]\nidle_timeout = -1", "limits.idle_timeout"),
        ('[routes."x"]\nfoo = 1', 'routes."x".foo'),
        ('[routes."x"]\nhandler = "nodot"', 'routes."x".handler'),
        ('[routes."x"]\nhandler = "a.b"\nurl = "http://x"', 'routes."x"'),
        ('[routes."x"]\nurl = "ftp://x"', 'routes."x".url'),
        (
            '[routes."$connect"]\nhandler = "a.b"\nroute_response = true',
            'routes."$connect".route_response',
        ),
        ("[api]\nroute_selection_expression = '$request.body.'", "api.route_selection_expression"),
        ("[api]\nstage = 'a/b'", "api.stage"),
        ("[management]\nhost = '0.0.0.0'", "management.auth"),
        ("[management]\nauth = 'sigv4'", "management.credentials"),
        ("[management]\nauth = 'basic'", "management.auth"),
        ("[limits]\nmax_message_bytes = 1000", "limits.max_message_bytes"),
        ("[static]\ndir = 'missing'", "static.dir"),
        (
            "[authorizer]\nhandler = 'a.b'\nidentity_source = ['route.request.body.x']",
            "authorizer.identity_source[0]",
        ),
        ("[authorizer.jwt]\nsecret = 's'", "authorizer.identity_source"),
        ("[log]\nformat = 'xml'", "log.format"),
        ('[routes."x"]\nhandler = "a.b"\nname = "has space"', 'routes."x".name'),
        ('[routes."x"]\nhandler = "a.b"\nname = ""', 'routes."x".name'),
        ("[authorizer]\nhandler = 'a.b'\nname = 'x/y'", "authorizer.name"),
        ("[authorizer]\nhandler = 'a.b'\nenvironment = 3", "authorizer.environment"),
        (
            "[authorizer]\nhandler = 'a.b'\n[authorizer.environment]\nX = []",
            "authorizer.environment.X",
        ),
        ("[management]\nrate_limit = -1", "management.rate_limit"),
        ("[management]\nburst = 1.5", "management.burst"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), env={})
    assert info.value.key == key


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[server\nport = 1"), env={})


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", env={})


def test_sigv4_allows_a_public_management_listener(tmp_path: Path) -> None:
    text = (
        "[management]\nhost = '0.0.0.0'\nauth = 'sigv4'\n"
        "[[management.credentials]]\naccess_key_id = 'AKIA1'\nsecret_access_key = 's'\n"
    )
    config = load_config(_write(tmp_path, text), env={})
    assert config.management.credentials[0].access_key_id == "AKIA1"


def test_management_browser_and_timeout_keys_load(tmp_path: Path) -> None:
    text = (
        "[management]\nallowed_hosts = ['gw.internal']\nallowed_origins = ['https://a.example']\n"
        "header_timeout = 2\nidle_timeout = 30\n[limits]\nmax_pending_handshakes = 10\n"
    )
    config = load_config(_write(tmp_path, text), env={})
    assert config.management.allowed_hosts == ("gw.internal",)
    assert config.management.allowed_origins == ("https://a.example",)
    assert (config.management.header_timeout, config.management.idle_timeout) == (2.0, 30.0)
    assert config.limits.max_pending_handshakes == 10


@pytest.mark.parametrize("key", ["header_timeout", "idle_timeout"])
def test_management_timeouts_must_be_positive(key: str) -> None:
    with pytest.raises(ConfigError, match=f"management.{key}: must be greater than 0"):
        build_config({"management": {key: 0}}, base_dir=Path("."))


@given(st.text(max_size=200))
def test_arbitrary_toml_text_loads_or_raises_config_error(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hubbub.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, env={})
        except ConfigError:
            pass


@given(
    st.dictionaries(
        st.sampled_from(["api", "server", "limits", "routes", "management", "store", "x"]),
        st.dictionaries(
            st.text(max_size=12),
            st.one_of(
                st.integers(), st.text(max_size=8), st.booleans(), st.floats(allow_nan=False)
            ),
            max_size=4,
        ),
        max_size=4,
    )
)
def test_arbitrary_config_trees_load_or_raise_config_error(raw: dict[str, object]) -> None:
    try:
        build_config(raw, base_dir=Path("."))
    except ConfigError:
        pass


def test_functions_take_a_name_and_the_authorizer_an_environment(tmp_path: Path) -> None:
    text = (
        '[routes."$connect"]\nhandler = "a.b"\nname = "chat-connect"\n'
        "[authorizer]\nhandler = 'a.auth'\nname = 'chat-auth'\ntimeout = 3\n"
        "[authorizer.environment]\nSECRET = 'x'\n"
    )
    config = load_config(_write(tmp_path, text), env={})
    assert config.routes["$connect"].name == "chat-connect"
    assert config.authorizer is not None
    assert config.authorizer.name == "chat-auth"
    assert config.authorizer.timeout == 3
    assert config.authorizer.environment == {"SECRET": "x"}


def test_management_rate_limit_is_off_by_default() -> None:
    config = build_config({}, base_dir=Path.cwd())
    assert (config.management.rate_limit, config.management.burst) == (0.0, 0)
    limited = build_config({"management": {"rate_limit": 5, "burst": 10}}, base_dir=Path.cwd())
    assert (limited.management.rate_limit, limited.management.burst) == (5.0, 10)
