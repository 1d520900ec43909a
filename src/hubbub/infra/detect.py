"""Which format an infrastructure file is, and the reader that reads it.

From the name first (``.tf`` or a folder of them: Terraform; ``serverless.yml``/``.yaml``:
serverless), then from the content (YAML or JSON with ``Resources``, ``AWSTemplateFormatVersion``
or ``Transform``: SAM when the transform is ``AWS::Serverless-…``, else CloudFormation).
``--format`` (``[import] format``) forces one.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Protocol, cast

from hubbub.infra.model import FORMAT_NAMES as FORMATS
from hubbub.infra.model import Format, ImportedApi, InfraError, Origin, ReadOptions

# The module that reads each format, imported only when needed (each has its own parser).
_READERS = {
    "sam": "hubbub.infra.cloudformation",
    "cloudformation": "hubbub.infra.cloudformation",
    "serverless": "hubbub.infra.serverless",
    "terraform": "hubbub.infra.terraform",
}
_TOP_KEY = re.compile(r"^(Resources|AWSTemplateFormatVersion|Transform)\s*:", re.MULTILINE)
_SAM_TRANSFORM = re.compile(r"AWS::Serverless-\d")


class Reader(Protocol):
    def __call__(self, path: Path, options: ReadOptions) -> ImportedApi: ...


def detect(path: Path, forced: str | None = None) -> Format:
    """The format of ``path``; ``forced`` (``--format``) wins when given."""
    if forced:
        if forced not in FORMATS:
            raise InfraError(
                Origin(path), f"--format {forced}", f"unknown format (known: {', '.join(FORMATS)})"
            )
        return cast(Format, forced)
    if path.is_dir():
        if any(path.glob("*.tf")):
            return "terraform"
        for name in ("serverless.yml", "serverless.yaml", "template.yaml", "template.yml"):
            if (path / name).is_file():
                return detect(path / name)
        raise InfraError(
            Origin(path),
            "",
            "this folder holds no .tf files, serverless.yml or template.yaml",
            "name the file, or pass --format",
        )
    if not path.is_file():
        raise InfraError(Origin(path), "", "no such file")
    if path.suffix == ".tf" or path.name.endswith(".tf.json"):
        return "terraform"
    if path.name in ("serverless.yml", "serverless.yaml"):
        return "serverless"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InfraError(Origin(path), "", f"cannot read it: {exc}") from exc
    if path.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InfraError(Origin(path, exc.lineno), "", f"not valid JSON: {exc.msg}") from exc
        if isinstance(data, dict) and _TOP_KEY.search("\n".join(f"{k}:" for k in data)):
            transform = json.dumps(data.get("Transform", ""))
            return "sam" if _SAM_TRANSFORM.search(transform) else "cloudformation"
    elif path.suffix in (".yaml", ".yml", ".template", ".cfn"):
        if _TOP_KEY.search(text):
            head = text[: text.find("Resources:")] if "Resources:" in text else text
            return "sam" if _SAM_TRANSFORM.search(head) else "cloudformation"
        if re.search(r"^(service|provider|functions)\s*:", text, re.MULTILINE):
            return "serverless"
    raise InfraError(
        Origin(path),
        "",
        "not a format hubbub imports (a SAM/CloudFormation template, serverless.yml, Terraform "
        ".tf files, or a hubbub.toml)",
        f"pass --format {'|'.join(FORMATS)} to force one",
    )


def reader(fmt: Format) -> Reader:
    """The ``read(path, options)`` of ``fmt``'s module."""
    name = _READERS[fmt]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise  # the reader itself misses a dependency: that error says which
        raise InfraError(
            Origin(Path(name.replace(".", "/") + ".py")),
            "",
            f"this hubbub has no {fmt} reader ({name} is not installed)",
        ) from exc
    return cast(Reader, module.read)


def read(path: Path, options: ReadOptions, forced: str | None = None) -> ImportedApi:
    """Detect ``path``'s format and read it."""
    return reader(detect(path, forced))(path, options)
