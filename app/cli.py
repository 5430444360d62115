"""The `vqclip` command line: `vqclip --help` lists the commands."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module adds its subcommands with register(subparsers); each subcommand sets `func(args) -> int`.
COMMAND_MODULES = [
    "app.cli_generate",
    "app.cli_weights",
    "app.cli_logo",
    "app.cli_jobs",
    "app.cli_serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqclip",
        description="Text-to-image generation by VQGAN+CLIP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from generator.errors import VqclipError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VqclipError as exc:
        print(f"vqclip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vqclip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
