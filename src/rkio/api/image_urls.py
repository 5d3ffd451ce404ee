"""Remote image URLs in OpenAI ``image_url`` parts: fetched only when ``image_urls = true`` is set.

Off by default: a server that fetches URLs a client names can be pointed at the user's own network
(server-side request forgery). When on, each http(s) URL is fetched once per request with a time limit and
at most ``rkio.runtime.images.MAX_IMAGE_BYTES``, and replaced by the bytes as a data URL before the messages
are converted; anything that fails is a 400 naming the part.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from rkio.api.errors import BadParameter
from rkio.runtime.images import MAX_IMAGE_BYTES

FETCH_TIMEOUT_S = 10.0


async def fetch_image_urls(messages: list[Any], enabled: bool,
                           transport: httpx.AsyncBaseTransport | None = None) -> None:
    """Replace http(s) image URLs in ``messages`` (OpenAI request messages) by data URLs, in place."""
    if not enabled:
        return  # decode_image refuses them with a clear message
    parts = [(i, j, part) for i, msg in enumerate(messages) if isinstance(msg.content, list)
             for j, part in enumerate(msg.content)
             if part.type == "image_url" and part.image_url is not None
             and part.image_url.url.startswith(("http://", "https://"))]
    if not parts:
        return
    client = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=True, transport=transport)
    async with client:
        for i, j, part in parts:
            where = f"messages.{i}.content.{j}.image_url"
            data = await _fetch(client, part.image_url.url, where)
            part.image_url.url = "data:;base64," + base64.b64encode(data).decode()


async def _fetch(client: httpx.AsyncClient, url: str, where: str) -> bytes:
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise BadParameter(f"fetching the image failed: HTTP {response.status_code}", where)
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise BadParameter(f"the image is larger than {MAX_IMAGE_BYTES} bytes", where)
            return bytes(data)
    except httpx.HTTPError as exc:
        raise BadParameter(f"fetching the image failed: {exc}", where) from exc
