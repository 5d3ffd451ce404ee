"""Entry point of the ``rkio`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rkio import __version__
from rkio.errors import ConfigError

# Each module registers its subcommand(s) and sets ``func`` (args -> exit code) on its parser.
COMMANDS = ("serve", "client_commands", "model_commands", "mcp", "doctor", "probe", "rpc", "service")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rkio", description="LLM server for Rockchip NPUs")
    parser.add_argument("--version", action="version", version=f"rkio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"rkio.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # a bad RKIO_* variable or config file: one line, not a traceback
        print(f"rkio {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
