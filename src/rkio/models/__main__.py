"""``python -m rkio.models install [--models-dir DIR]``: place the default CPU model (used by make run)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rkio.config import Settings
from rkio.errors import RkioError
from rkio.models.default import NAME, install_default_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rkio.models")
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help=f"install the default CPU model ({NAME})")
    install.add_argument("--models-dir", type=Path, help="default: $RKIO_MODELS_DIR or ~/.rkio/models")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or Settings.load().models_dir
    try:
        result = install_default_model(models_dir)
    except (RkioError, OSError, ValueError) as exc:
        print(f"rkio: cannot install {NAME}: {exc}", file=sys.stderr)
        return 1
    state = "installed" if result.changed else "already installed"
    print(f"{NAME} {state}: {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
