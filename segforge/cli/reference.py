"""Render ``docs/cli.md`` from the commands' own argparse parsers, so the page cannot drift.

    python -m segforge.cli.reference --write     # regenerate docs/cli.md
    python -m segforge.cli.reference --check     # exit 1 when docs/cli.md is stale
    python -m segforge.cli.reference             # print the page

Every command module in ``segforge/cli/`` offers ``build_parser() -> argparse.ArgumentParser``
(building it runs nothing). The page is formatted at a fixed width (:data:`WIDTH`), never
the terminal's, so the same code gives the same bytes everywhere; ``tests/cli/test_cli_reference.py``
fails when the committed page differs from :func:`render_reference`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from pathlib import Path

__all__ = ["COMMANDS", "WIDTH", "DEFAULT_OUTPUT", "load_parser", "render_command", "render_reference", "main"]

# console script -> module holding build_parser() and main() (the same pairs as pyproject's [project.scripts])
COMMANDS: dict[str, str] = {
    "segforge_plan_and_preprocess": "segforge.cli.plan_and_preprocess",
    "segforge_train": "segforge.cli.train",
    "segforge_predict": "segforge.cli.predict",
    "segforge_evaluate": "segforge.cli.evaluate",
    "segforge_import": "segforge.cli.import_dataset",
    "segforge_demo": "segforge.cli.demo",
    "segforge_synthetic": "segforge.cli.synthetic",
    "segforge_export": "segforge.cli.export",
    "segforge_find_best_configuration": "segforge.cli.find_best_configuration",
}
WIDTH = 100  # columns of the rendered usage blocks, whatever the terminal says
DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

_INTRO = """\
# Command-line reference

Generated from the commands' own argument parsers by `python -m segforge.cli.reference --write`;
`tests/cli/test_cli_reference.py` fails when this page and the parsers disagree, so edit the
`help=` texts in `segforge/cli/*.py`, not this file. Every command answers `-h`.

Folders come from the environment: `SEGFORGE_RAW`, `SEGFORGE_PREPROCESSED`, `SEGFORGE_RESULTS`
(default `./segforge_raw`, `./segforge_preprocessed`, `./segforge_results`). A mistake in the
input or the arguments ends with one line saying what is wrong and exit code 2.
"""


def load_parser(module_name: str) -> argparse.ArgumentParser:
    """The parser of a command module, from its ``build_parser()`` (nothing else is run)."""
    module = importlib.import_module(module_name)
    build = getattr(module, "build_parser", None)
    if not callable(build):
        raise AttributeError(f"{module_name} has no build_parser(); every command module must offer one")
    parser = build()
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"{module_name}.build_parser() returned {type(parser).__name__}, not an ArgumentParser")
    return parser


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    # a fixed width (argparse would otherwise read COLUMNS / the terminal size)
    parser.formatter_class = functools.partial(parser.formatter_class, width=WIDTH, max_help_position=32)
    return parser._get_formatter()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _invocation(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    """``-c, --configuration CONFIGURATION`` (the metavar once, whatever the Python version's own style)."""
    if not action.option_strings:
        return formatter._format_args(action, formatter._get_default_metavar_for_positional(action))
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    return f"{flags} {formatter._format_args(action, formatter._get_default_metavar_for_optional(action))}"


def render_command(name: str, parser: argparse.ArgumentParser) -> str:
    """One command's section: description, usage block, then one bullet per argument."""
    formatter = _formatter(parser)
    lines = [f"## `{name}`", ""]
    if parser.description:
        lines += [_one_line(parser.description), ""]
    usage = parser.format_usage().strip()
    lines += ["```text", usage, "```", ""]
    positionals = [a for a in parser._actions if not a.option_strings]
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    for title, actions in (("Positional arguments", positionals), ("Options", options)):
        if not actions:
            continue
        lines += [f"{title}:", ""]
        for action in actions:
            invocation = _invocation(formatter, action)
            text = _one_line(formatter._expand_help(action)) if action.help else ""
            if not text and action.default not in (None, False, argparse.SUPPRESS):
                text = f"default {action.default}"  # no help text: at least say what it defaults to
            notes = []
            if action.required and action.option_strings:
                notes.append("required")
            if action.choices is not None and "{" not in invocation:
                notes.append("one of " + ", ".join(map(str, action.choices)))
            lines.append(f"* `{invocation}`" + (f" ({'; '.join(notes)})" if notes else "") + (f": {text}" if text else ""))
        lines.append("")
    return "\n".join(lines)


def render_reference() -> str:
    """The whole page: the introduction, then every command in :data:`COMMANDS` order."""
    sections = [_INTRO]
    sections += [render_command(name, load_parser(module)) for name, module in COMMANDS.items()]
    return "\n".join(sections).rstrip("\n") + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segforge.cli.reference",
                                     description="Render the command-line reference (docs/cli.md) from the parsers.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the page to --output")
    mode.add_argument("--check", action="store_true", help="exit 1 when --output differs from the rendering")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the page (default: docs/cli.md)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    text = render_reference()
    if args.check:
        current = args.output.read_text() if args.output.is_file() else None
        if current != text:
            print(f"{args.output} is stale: run python -m segforge.cli.reference --write", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    if args.write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.output.with_name(f".tmp-{os.getpid()}-{args.output.name}")
        tmp.write_text(text)
        os.replace(tmp, args.output)
        print(f"wrote {args.output}")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
