"""The `motionlcm` subcommands beyond serving: generate, demo, replay, convert, retarget (and the GIF preview they
write); each registers itself through `add_parser(subparsers)` (backend/cli.py assembles them)."""
