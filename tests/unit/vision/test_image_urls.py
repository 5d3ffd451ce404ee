"""Remote image URLs: refused unless ``image_urls`` is on; then fetched, bounded, and errors are 400s."""

from __future__ import annotations

import httpx
import pytest

from rkio.api.engine_request import decode_image
from rkio.api.errors import BadParameter
from rkio.api.image_urls import fetch_image_urls
from rkio.api.openai_routes import chat_messages
from rkio.api.openai_schema import ChatMessageIn
from rkio.runtime import images

PICTURE = b"\x89PNG fake bytes"


def message(url: str) -> ChatMessageIn:
    return ChatMessageIn.model_validate({"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]})


def transport(status: int = 200, body: bytes = PICTURE) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


async def test_urls_are_left_to_be_refused_when_the_setting_is_off() -> None:
    messages = [message("https://example.com/cat.png")]
    await fetch_image_urls(messages, False, transport())
    with pytest.raises(BadParameter, match="not fetched"):
        chat_messages(messages)


async def test_urls_are_fetched_when_enabled() -> None:
    messages = [message("https://example.com/cat.png")]
    await fetch_image_urls(messages, True, transport())
    assert chat_messages(messages)[0].images == (PICTURE,)


@pytest.mark.parametrize(("status", "body", "why"), [(404, b"", "HTTP 404"), (200, b"x" * 101, "larger")])
async def test_fetch_failures_are_bad_requests(monkeypatch: pytest.MonkeyPatch, status: int, body: bytes,
                                               why: str) -> None:
    monkeypatch.setattr("rkio.api.image_urls.MAX_IMAGE_BYTES", 100)
    with pytest.raises(BadParameter, match=why) as info:
        await fetch_image_urls([message("http://example.com/x")], True, transport(status, body))
    assert info.value.param == "messages.0.content.1.image_url"


def test_data_urls_decode_without_a_media_type() -> None:
    assert decode_image("data:;base64,aGk=", "p") == b"hi"
    assert images.MAX_IMAGE_BYTES >= 20 << 20
