"""``hubbub import PATH``: print the hubbub.toml equivalent to an infrastructure file, and the
import flags ``serve`` and ``check`` share with it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hubbub.errors import ConfigError
from hubbub.infra.detect import detect, reader
from hubbub.infra.load import ignored_summary, read_options, to_toml
from hubbub.infra.model import FORMAT_NAMES


def add_import_flags(parser: argparse.ArgumentParser, *, with_format: bool = True) -> None:
    """--format, --stage, --parameter, --var, --var-file."""
    if with_format:
        parser.add_argument(
            "--format",
            choices=FORMAT_NAMES,
            help="the format of --config/PATH when it is not detected from name and content",
        )
    parser.add_argument("--stage", help="the stage to import (default: the file's own or dev)")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a CloudFormation/SAM parameter (repeatable)",
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Terraform variable or serverless ${opt:KEY} (repeatable)",
    )
    parser.add_argument(
        "--var-file", action="append", default=[], metavar="FILE", help="a .tfvars file"
    )


def import_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as ``load_config``'s ``import_options`` (only those given)."""
    options: dict[str, Any] = {}
    if getattr(args, "format", None):
        options["format"] = args.format
    if getattr(args, "stage", None):
        options["stage"] = args.stage
    for flag, key in (("parameter", "parameters"), ("var", "vars")):
        pairs = getattr(args, flag, None) or []
        if pairs:
            options[key] = dict(_pair(pair, f"--{flag}") for pair in pairs)
    if getattr(args, "var_file", None):
        options["var_files"] = list(args.var_file)
    return options


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(flag, f"must look like KEY=VALUE, got {text!r}")
    return key, value


def run_import(args: argparse.Namespace) -> int:
    """Print the equivalent hubbub.toml on stdout; the summary line on stderr."""
    path = Path(args.path)
    options = import_options(args)
    read = read_options(options, Path.cwd(), key="import")
    api = reader(detect(path, options.get("format")))(path, read)
    print(f"hubbub: {ignored_summary(api.ignored)}", file=sys.stderr)
    sys.stdout.write(to_toml(api, Path(args.output_dir).resolve()))
    return 0
