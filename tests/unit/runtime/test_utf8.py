"""UTF-8 split across runtime callbacks reaches callers as whole characters."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from rkio.runtime.utf8 import Utf8Reassembler


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.text(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_split_reassembles_to_the_original_text(text: str, cuts: list[int]) -> None:
    decoder = Utf8Reassembler()
    pieces = [decoder.feed(piece) for piece in _split(text.encode(), cuts)]
    assert "".join(pieces) + decoder.flush() == text


@given(st.text(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_characters_are_released_as_soon_as_they_are_complete(text: str, cuts: list[int]) -> None:
    decoder = Utf8Reassembler()
    data = text.encode()
    seen = b""
    released = ""
    for piece in _split(data, cuts):
        seen += piece
        released += decoder.feed(piece)
        # everything except the bytes of one unfinished character is out already
        assert released.encode() + decoder.pending == seen
        assert len(decoder.pending) < 4


def test_a_character_split_over_three_callbacks_comes_out_once_whole() -> None:
    decoder = Utf8Reassembler()
    snowman = "☃".encode()
    assert [decoder.feed(snowman[:1]), decoder.feed(snowman[1:2]), decoder.feed(snowman[2:] + b"!")] == [
        "", "", "☃!"]


@given(st.binary(), st.lists(st.integers(min_value=0, max_value=1000), max_size=20))
def test_garbage_bytes_never_raise_and_become_replacement_characters(data: bytes, cuts: list[int]) -> None:
    decoder = Utf8Reassembler()
    text = "".join(decoder.feed(piece) for piece in _split(data, cuts)) + decoder.flush()
    assert text == data.decode("utf-8", "replace")


def test_flush_turns_a_dangling_partial_character_into_one_replacement_and_resets() -> None:
    decoder = Utf8Reassembler()
    assert decoder.feed("é".encode()[:1]) == ""
    assert decoder.flush() == "\ufffd"
    assert decoder.pending == b""
    assert decoder.feed(b"ok") == "ok"
