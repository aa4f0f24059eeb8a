"""`motionlcm` command line: generate, demo, replay, convert, retarget, serve.

Each subcommand lives next to the code it drives and registers itself through `add_parser(subparsers)`;
this module only assembles them. Progress and timings go to stderr, results to files.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backend.errors import MotionLCMError


# Subcommand -> the module that registers it (`add_parser(subparsers)`) and runs it.
COMMANDS = {"generate": "backend.commands.generate", "demo": "backend.commands.demo",
            "replay": "backend.commands.replay", "convert": "backend.commands.convert",
            "retarget": "backend.commands.retarget", "serve": "backend.serving.server"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `only` one: a command then imports nothing the others need
    (start-up time, docs/performance.md)."""
    parser = argparse.ArgumentParser(prog="motionlcm", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        if only in (None, name):
            importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    try:
        result = args.func(args)
    except (MotionLCMError, ValueError) as exc:  # ValueError: math refusing the input (backend.errors)
        print(f"motionlcm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"motionlcm {args.command}: cancelled", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
