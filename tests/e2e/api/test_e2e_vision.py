"""Images through the official clients against a live server on the simulators (rkllm + librknnrt): the
answers depend on the picture each turn sent, several pictures per request, and bad images are 400s."""

from __future__ import annotations

import base64
import re

import ollama
import openai
import pytest
from live_server import LiveServer

from simkit.vision import png

IMAGE_WORD = re.compile(r"image:[0-9a-f]{8}")
RED, BLUE, GREEN = png((250, 0, 0)), png((0, 0, 250)), png((0, 250, 0), fmt="JPEG")


def data_url(image: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(image).decode()}"


def part(image: bytes, kind: str = "png") -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": data_url(image, kind)}}


def words(text: str) -> list[str]:
    return list(dict.fromkeys(IMAGE_WORD.findall(text)))


def test_openai_consecutive_turns_about_different_images(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    turn1 = [{"role": "user", "content": [{"type": "text", "text": "what is this [[n=30]]"}, part(RED)]}]
    first = client.chat.completions.create(model="sim-vl", messages=turn1)  # type: ignore[arg-type]
    answer1 = first.choices[0].message.content or ""
    assert len(words(answer1)) == 1
    turn2 = [*turn1, {"role": "assistant", "content": answer1},
             {"role": "user", "content": [{"type": "text", "text": "and this [[n=60]]"}, part(BLUE)]}]
    second = client.chat.completions.create(model="sim-vl", messages=turn2)  # type: ignore[arg-type]
    answer2 = second.choices[0].message.content or ""
    assert words(answer2)[-1] not in words(answer1)  # the new picture is the one the new answer is about
    alone = client.chat.completions.create(model="sim-vl", messages=[  # type: ignore[arg-type]
        {"role": "user", "content": [{"type": "text", "text": "x"}, part(BLUE)]}])
    assert words(alone.choices[0].message.content or "") == words(answer2)[-1:]


def test_openai_several_images_and_streaming(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    content = [{"type": "text", "text": "compare [[n=40]]"}, part(RED), part(GREEN, "jpeg")]
    chunks = client.chat.completions.create(model="sim-vl", stream=True,  # type: ignore[call-overload]
                                            messages=[{"role": "user", "content": content}])
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(words(streamed)) == 2


def test_openai_bad_images_are_400(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    for url, why in (("https://example.com/cat.png", "not fetched"),
                     ("data:image/png;base64," + base64.b64encode(b"no picture").decode(), "not an image")):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="sim-vl", messages=[  # type: ignore[arg-type]
                {"role": "user", "content": [{"type": "text", "text": "x"},
                                             {"type": "image_url", "image_url": {"url": url}}]}])
        assert why in str(info.value)


def test_ollama_chat_and_generate_with_images(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    red, blue = (client.chat(model="sim-vl", messages=[{"role": "user", "content": "hi [[n=20]]",
                                                        "images": [image]}]) for image in (RED, BLUE))
    assert len(words(red.message.content or "")) == 1
    assert words(red.message.content or "") != words(blue.message.content or "")
    gen = client.generate(model="sim-vl", prompt="describe [[n=30]]", images=[RED, GREEN])
    assert words(gen.response)[:1] == words(red.message.content or "") and len(words(gen.response)) == 2
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="sim-vl", messages=[{"role": "user", "content": "x",
                                              "images": [base64.b64encode(b"text").decode()]}])
    assert info.value.status_code == 400


def image_block(image: bytes, media: str = "image/png") -> dict[str, object]:
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": b64(image)}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_anthropic_image_blocks_in_consecutive_turns(server: LiveServer) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    turn1 = [{"role": "user", "content": [image_block(RED), {"type": "text", "text": "what [[n=30]]"}]}]
    first = client.messages.create(model="sim-vl", max_tokens=64, messages=turn1)  # type: ignore[arg-type]
    answer1 = "".join(b.text for b in first.content if b.type == "text")
    assert len(words(answer1)) == 1
    turn2 = [*turn1, {"role": "assistant", "content": answer1},
             {"role": "user", "content": [image_block(GREEN, "image/jpeg"), image_block(BLUE),
                                          {"type": "text", "text": "and these [[n=80]]"}]}]
    second = client.messages.create(model="sim-vl", max_tokens=128, messages=turn2)  # type: ignore[arg-type]
    answer2 = "".join(b.text for b in second.content if b.type == "text")
    assert len(words(answer2)) == 3 and words(answer2)[0] == words(answer1)[0]  # the history's, then the new
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="sim-vl", max_tokens=8, messages=[  # type: ignore[list-item]
            {"role": "user", "content": [image_block(b"not a picture"), {"type": "text", "text": "x"}]}])
