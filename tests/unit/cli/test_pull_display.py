"""``rkio pull``'s display: a progress bar on a terminal, one line per stage elsewhere."""

from __future__ import annotations

import io

from rkio.cli.model_commands import _PullDisplay

EVENTS = [{"status": "pulling manifest"}, {"status": "downloading", "total": 4 << 20, "completed": 0},
          {"status": "downloading", "total": 4 << 20, "completed": 4 << 20},
          {"status": "verifying digest", "total": 4 << 20, "completed": 4 << 20},
          {"status": "success", "name": "m"}]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_output_names_each_stage_once() -> None:
    out = io.StringIO()
    with _PullDisplay(out) as display:
        for event in EVENTS:
            display.show(event)
    assert out.getvalue().splitlines() == ["pulling manifest", "downloading", "verifying digest", "success"]


def test_a_terminal_gets_a_bar_with_the_bytes() -> None:
    out = Terminal()
    with _PullDisplay(out) as display:
        for event in EVENTS:
            display.show(event)
    text = out.getvalue()
    assert "4.2" in text and "MB" in text and "success" in text  # rich's DownloadColumn: 4.2/4.2 MB
