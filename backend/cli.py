"""`motionlcm` command line: generate, demo, replay, convert, retarget, serve.

Each subcommand lives next to the code it drives and registers itself through `add_parser(subparsers)`;
this module only assembles them. Progress and timings go to stderr, results to files.
"""

from __future__ import annotations

import argparse
import sys

from backend.errors import MotionLCMError


def _subcommand_modules():
    # Imported on use, not at module import: backend.cli must stay cheap to import.
    from backend.commands import convert, demo, generate, replay, retarget
    from backend.serving import server

    return (generate, demo, replay, convert, retarget, server)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motionlcm", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in _subcommand_modules():
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
