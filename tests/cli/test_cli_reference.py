"""docs/cli.md is the rendering of the parsers, and every console script has a build_parser()."""

from __future__ import annotations

import argparse
import importlib
import tomllib
from pathlib import Path

import pytest

from segforge.cli import reference

REPO = Path(__file__).resolve().parents[2]


def _scripts() -> dict[str, str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


@pytest.fixture(scope="module")
def rendered() -> str:
    return reference.render_reference()


def test_docs_cli_md_is_current(rendered):
    page = REPO / "docs" / "cli.md"
    assert page.is_file(), "docs/cli.md is missing: run python -m segforge.cli.reference --write"
    assert page.read_text() == rendered, \
        "docs/cli.md is stale: run python -m segforge.cli.reference --write"


@pytest.mark.parametrize("script", sorted(_scripts()))
def test_every_script_has_a_parser_and_a_section(script, rendered):
    module_name, function = _scripts()[script].split(":")
    assert reference.COMMANDS.get(script) == module_name, \
        f"{script} -> {module_name} in pyproject.toml, but segforge.cli.reference.COMMANDS says {reference.COMMANDS.get(script)}"
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function)), f"{module_name} has no {function}()"
    parser = reference.load_parser(module_name)
    assert parser.prog == script, f"{module_name}.build_parser() names itself {parser.prog!r}, not {script!r}"
    assert f"## `{script}`" in rendered


def test_no_command_without_a_script():
    assert set(reference.COMMANDS) == set(_scripts())


def test_rendering_does_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = reference.render_reference()
    monkeypatch.setenv("COLUMNS", "300")
    assert reference.render_reference() == narrow


def test_section_lists_every_option_with_its_help():
    parser = argparse.ArgumentParser(prog="tool", description="Does a thing.")
    parser.add_argument("dataset", help="which dataset")
    parser.add_argument("-c", "--configuration", required=True, help="which configuration")
    parser.add_argument("--mode", choices=("a", "b"), metavar="MODE", help="how")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = reference.render_command("tool", parser)
    assert text.startswith("## `tool`\n\nDoes a thing.\n\n```text\nusage: tool [-h] -c CONFIGURATION")
    assert "* `dataset`: which dataset" in text
    assert "* `-c, --configuration CONFIGURATION` (required): which configuration" in text
    assert "* `--mode MODE` (one of a, b): how" in text
    assert "* `--count COUNT`: default 3" in text
    assert "* `--flag`: a switch" in text
    assert "-h, --help" not in text


def test_module_without_build_parser_is_named(monkeypatch):
    with pytest.raises(AttributeError, match="segforge.cli._runner has no build_parser"):
        reference.load_parser("segforge.cli._runner")


def test_check_and_write(tmp_path, capsys):
    page = tmp_path / "cli.md"
    page.write_text("old\n")
    assert reference.main(["--check", "--output", str(page)]) == 1
    assert "is stale: run python -m segforge.cli.reference --write" in capsys.readouterr().err
    assert reference.main(["--write", "--output", str(page)]) == 0
    assert page.read_text() == reference.render_reference()
    assert reference.main(["--check", "--output", str(page)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["cli.md"]
