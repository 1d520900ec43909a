"""Keys that take one of a few words: the Literal type in the model is what loading accepts."""

from __future__ import annotations

from typing import get_args

import pytest

from hubbub import cli
from hubbub.config import LogFormat, LogLevel, ManagementAuth, load_config
from hubbub.errors import ConfigError


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("log.format", "xml", 'log.format: must be "text" or "json", got \'xml\''),
        ("log.format", 3, 'log.format: must be "text" or "json", got 3'),
        (
            "log.level",
            "loud",
            'log.level: must be one of "debug", "info", "warning", "error", got \'loud\'',
        ),
        ("management.auth", "basic", 'management.auth: must be "none" or "sigv4", got \'basic\''),
    ],
)
def test_a_word_outside_the_choices_names_the_key_and_the_words(
    key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, overrides={key: value})
    assert str(caught.value) == message


def test_the_log_level_is_read_in_any_case() -> None:
    assert load_config(env={}, overrides={"log.level": "WARNING"}).log.level == "warning"
    assert load_config(env={"HUBBUB_LOG_LEVEL": "Debug"}).log.level == "debug"


def test_the_log_format_and_auth_are_exact() -> None:
    with pytest.raises(ConfigError):
        load_config(env={}, overrides={"log.format": "JSON"})
    assert load_config(env={}, overrides={"log.format": "json"}).log.format == "json"


@pytest.mark.parametrize(
    ("flag", "words"), [("--log-format", get_args(LogFormat)), ("--log-level", get_args(LogLevel))]
)
def test_the_cli_offers_the_words_the_model_accepts(flag: str, words: tuple[str, ...]) -> None:
    for word in words:
        args = cli._parser().parse_args(["serve", flag, word])
        assert getattr(args, flag[2:].replace("-", "_")) == word
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["serve", flag, "nonsense"])


def test_management_auth_words() -> None:
    assert get_args(ManagementAuth) == ("none", "sigv4")
