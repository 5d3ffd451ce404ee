"""``rkio pull | rm | cp``: model management through a running server's Ollama-compatible API.

``pull`` shows a progress bar on a terminal (bytes, speed, time left) and one line per stage otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from rkio.cli.client_commands import Client, _client, _connection_flags, _guard, _is_tty


class _PullDisplay:
    """A rich progress bar for the download on terminals; stage names as plain lines elsewhere."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.status = ""
        self.progress: Any = None
        self.task: Any = None
        if _is_tty(err):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(),
                                     console=Console(file=err), transient=False)

    def __enter__(self) -> _PullDisplay:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def show(self, item: dict[str, Any]) -> None:
        status, total, completed = str(item.get("status", "")), item.get("total"), item.get("completed")
        if self.progress is not None and total:
            if self.task is None:
                self.task = self.progress.add_task("downloading", total=total, completed=completed or 0)
            self.progress.update(self.task, completed=completed or 0, description=status)
            return
        if status != self.status:
            self.status = status
            if self.progress is not None:
                self.progress.console.print(status)
            else:
                self.err.write(status + "\n")


def cmd_pull(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    body: dict[str, Any] = {"model": args.reference, "stream": True}
    if args.name:
        body["name"] = args.name
    last: dict[str, Any] = {}
    with _client(args, timeout=None) as client, _PullDisplay(err) as display:
        for item in client.stream("/api/pull", body):
            display.show(item)
            last = item
    out.write(f"pulled {args.reference} as {last.get('name', args.name or args.reference)}\n")
    return 0


def cmd_rm(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with _client(args, timeout=None) as client:
        for model in args.models:
            client.send("DELETE", "/api/delete", {"model": model})
            out.write(f"deleted {model}\n")
    return 0


def cmd_cp(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with _client(args, timeout=None) as client:
        client.send("POST", "/api/copy", {"source": args.source, "destination": args.destination})
    out.write(f"copied {args.source} to {args.destination}\n")
    return 0


def register(subparsers: Any) -> None:
    """Add pull, rm and cp."""
    pull = subparsers.add_parser("pull", help="download a model file from Hugging Face into the models "
                                 "directory (hf.co/<owner>/<repo>:<file>.gguf)")
    pull.add_argument("reference", help="hf.co/<owner>/<repo>:<file> (optionally @revision)")
    pull.add_argument("--name", help="local model name (default: the file name without .gguf/.rkllm)")
    _connection_flags(pull)
    pull.set_defaults(func=_guard(cmd_pull))

    rm = subparsers.add_parser("rm", help="delete models from the models directory (unloading them first)")
    rm.add_argument("models", nargs="+", metavar="MODEL")
    _connection_flags(rm)
    rm.set_defaults(func=_guard(cmd_rm))

    cp = subparsers.add_parser("cp", help="copy a model (its file is hard-linked) with its model.toml")
    cp.add_argument("source")
    cp.add_argument("destination")
    _connection_flags(cp)
    cp.set_defaults(func=_guard(cmd_cp))


__all__ = ["Client", "register"]
