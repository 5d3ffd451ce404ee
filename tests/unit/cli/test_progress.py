"""The loading spinner appears on terminals only, and is gone once stopped."""

from __future__ import annotations

import io

from rkio.cli.progress import Waiting


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_is_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Waiting("loading qwen", stream) as spinner:
        spinner.stop()
    assert stream.getvalue() == ""


def test_spinner_shows_the_message_on_a_terminal_and_stops() -> None:
    stream = Terminal()
    with Waiting("loading qwen", stream) as spinner:
        spinner.stop()
        spinner.stop()  # stopping twice (first token, then the end of the block) is fine
    assert "loading qwen" in stream.getvalue()
