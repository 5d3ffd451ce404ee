"""Stop strings: text is cut before the first stop string; possible prefixes are held back, not lost."""

from __future__ import annotations

import pytest

from rkio.engine.runner.stops import StopScanner


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[list[str], str, bool, list[int]]:
    """Feed ``pieces`` as tokens 0..n-1; returns (released per feed, total text shown, stopped, ids)."""
    scanner = StopScanner(stops)
    released: list[str] = []
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        text, got = scanner.feed(piece, i)
        released.append(text)
        ids += got
        if scanner.stopped:
            break
    tail, got = scanner.flush()
    ids += got
    return released, "".join(released) + tail, scanner.stopped, ids


@pytest.mark.parametrize(
    ("stops", "pieces", "shown", "stopped"),
    [
        (("</s>",), ["Hello", " world", "</s>", "more"], "Hello world", True),
        (("</s>",), ["Hello", "</", "s", ">", "x"], "Hello", True),  # split across tokens
        (("</s>",), ["a</", "b"], "a</b", False),  # a prefix that did not become a stop is released
        (("</s>",), ["a</"], "a</", False),  # held prefix released at the end
        (("User:",), ["ok. Us", "er: hi"], "ok. ", True),
        (("ab", "b"), ["xab"], "x", True),  # the earliest match wins
        (("b", "abc"), ["xa", "bc"], "x", True),  # the earlier-starting (longer) stop wins
        (("\n\n",), ["line\n", "\n", "next"], "line", True),
        (("",), ["anything"], "anything", False),  # empty stop strings are ignored
        (("stop",), ["sto", "p"], "", True),
        (("😀",), ["a😀b"], "a", True),
    ],
)
def test_shown_text(stops: tuple[str, ...], pieces: list[str], shown: str, stopped: bool) -> None:
    _, text, did_stop, _ = run(stops, pieces)
    assert (text, did_stop) == (shown, stopped)


def test_prefix_is_held_back_until_resolved() -> None:
    released, _, _, _ = run(("</s>",), ["Hi", " <", "/", "x"])
    assert released == ["Hi", " ", "", "</x"]


def test_ids_follow_their_text() -> None:
    # token 1 is held ("<"), then released with token 2 once "<x" cannot be a stop string
    _, _, _, ids = run(("</s>",), ["a", "<", "x"])
    assert ids == [0, 1, 2]
    # tokens that only formed the stop string are not reported
    _, text, _, ids = run(("</s>",), ["a", "</", "s>"])
    assert (text, ids) == ("a", [0])


def test_matched_names_the_earliest_stop_string() -> None:
    scanner = StopScanner(["END", "\n\n", "b"])
    assert scanner.feed("a\n", 0) == ("a", [0])
    assert scanner.matched is None
    scanner.feed("\nbEND", 1)
    assert scanner.stopped and scanner.matched == "\n\n"


def test_nothing_after_stop() -> None:
    scanner = StopScanner(["x"])
    assert scanner.feed("axb", 0) == ("a", [0])
    assert scanner.feed("more", 1) == ("", [])
    assert scanner.flush() == ("", [])
