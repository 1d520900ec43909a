"""The import start-up bench scenario runs (its timing is the bench's business, not the test's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.import_startup import first_101, write_project


def test_a_generated_ten_route_template_serves_and_answers_the_handshake(tmp_path: Path) -> None:
    template = write_project(tmp_path / "project", 10)
    assert len(list((tmp_path / "project" / "functions").iterdir())) == 10
    listening, connected, cpu = first_101(template, tmp_path / "state")
    assert 0 < listening <= connected
    assert cpu is None or cpu > 0  # None only without /proc


@pytest.mark.parametrize("fmt", ["serverless", "terraform"])
def test_the_same_api_as_serverless_yml_and_terraform_serves(tmp_path: Path, fmt: str) -> None:
    config = write_project(tmp_path / "project", 10, fmt)
    listening, connected, _ = first_101(config, tmp_path / "state")
    assert 0 < listening <= connected
