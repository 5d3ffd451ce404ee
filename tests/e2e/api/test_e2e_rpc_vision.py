"""The IO API's vision path over the Unix socket: nano's image.process, then rkllm.run with the embedding as
multimodal input; and the rknn.* calls on an encoder lease. Real ``rkio serve`` on the simulators."""

from __future__ import annotations

import base64
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import LiveServer, launch
from rpc_clients import LineConn, RpcError

import simkit
from simkit.vision import EMBED_DIM, ENCODER_SIZE, IMAGE_TOKENS, png

IMAGE_WORD = re.compile(r"image:[0-9a-f]{8}")


@pytest.fixture(scope="module")
def unix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    home: Path = tmp_path_factory.mktemp("rpc-vision")
    path = f"/tmp/rkio-e2e-vision-{os.getpid()}.sock"
    server = launch(home, simkit.sim_library("1.2.3"), "1.2.3", "--rpc-unix", path)
    yield server, path
    assert server.stop() == 0, server.log()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run_with(conn: LineConn, handle: int, embedding: list[float]) -> str:
    reply = conn.call("rkllm.run", {"handle_id": handle, "input_type": "RKLLM_INPUT_MULTIMODAL",
                                    "multimodal_input": {"prompt": "<image> describe [[n=12]]",
                                                         "image_embed": embedding,
                                                         "n_image_tokens": IMAGE_TOKENS, "n_image": 1}})
    return str(reply["text"])


def test_image_process_then_rkllm_run_multimodal(unix_server: tuple[LiveServer, str]) -> None:
    conn = LineConn.unix(unix_server[1])
    proc = conn.call("image.init_processor", {"model_path": "sim-vl/vision.rknn"})
    assert proc["success"] and proc["model"] == "sim-vl"
    red = conn.call("image.process", {"context": proc["context"], "image_data": b64(png((250, 0, 0)))})
    blue = conn.call("image.process", {"context": proc["context"], "image_data": b64(png((0, 0, 250)))})
    assert (red["n_image_tokens"], red["embed_dim"]) == (IMAGE_TOKENS, EMBED_DIM)
    assert len(red["embeddings"]) == red["embedding_size"] == IMAGE_TOKENS * EMBED_DIM
    handle = conn.call("rkllm.init", {"model_path": "sim-vl"})["handle_id"]
    about_red = run_with(conn, handle, red["embeddings"])
    about_blue = run_with(conn, handle, blue["embeddings"])
    assert set(IMAGE_WORD.findall(about_red)) != set(IMAGE_WORD.findall(about_blue))
    assert run_with(conn, handle, red["embeddings"]) == about_red
    with pytest.raises(RpcError) as info:
        conn.call("image.process", {"context": proc["context"], "image_data": b64(b"no picture")})
    assert "not an image" in str(info.value.error)
    assert conn.call("image.cleanup_processor", {"context": proc["context"]})["success"]
    conn.close()


def test_rknn_calls_on_an_encoder_lease(unix_server: tuple[LiveServer, str]) -> None:
    conn = LineConn.unix(unix_server[1])
    consts = conn.call("rknn.get_constants")
    assert consts["TYPES"]["RKNN_TENSOR_UINT8"] == 3 and consts["ERRORS"]["RKNN_ERR_MALLOC_FAIL"] == -4
    ctx = conn.call("rknn.init", {"model_path": "sim-vl"})["context"]
    attr = conn.call("rknn.query", {"context": ctx, "query_type": "input_attr"})
    assert attr["dims"] == [1, ENCODER_SIZE, ENCODER_SIZE, 3]
    out_attr = conn.call("rknn.query", {"context": ctx, "query_type": "output_attr"})
    assert out_attr["dims"] == [1, IMAGE_TOKENS, EMBED_DIM]
    with pytest.raises(RpcError):
        conn.call("rknn.run", {"context": ctx})  # no input yet
    tensor = bytes(range(256)) * (ENCODER_SIZE * ENCODER_SIZE * 3 // 256)
    conn.call("rknn.inputs_set", {"context": ctx, "inputs": [
        {"index": 0, "type": "RKNN_TENSOR_UINT8", "fmt": "RKNN_TENSOR_NHWC", "size": len(tensor),
         "data": b64(tensor)}]})
    ran = conn.call("rknn.run", {"context": ctx})
    assert ran["outputs"][0]["size"] == IMAGE_TOKENS * EMBED_DIM * 4
    full = conn.call("rknn.outputs_get", {"context": ctx, "extend": {"return_full_data": True}})
    packed = conn.call("rknn.outputs_get", {"context": ctx})
    raw = base64.b64decode(packed["outputs"][0]["buf"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(full["outputs"][0]["data"])
    conn.call("rknn.outputs_release", {"context": ctx})
    with pytest.raises(RpcError):
        conn.call("rknn.outputs_get", {"context": ctx})
    with pytest.raises(RpcError):  # a tensor of the wrong size is refused by the runtime, not a crash
        conn.call("rknn.inputs_set", {"context": ctx, "inputs": [{"index": 0, "data": b64(b"abc")}]})
        conn.call("rknn.run", {"context": ctx})
    assert conn.call("rknn.destroy", {"context": ctx})["success"]
    with pytest.raises(RpcError):
        conn.call("rknn.init", {"model_path": "sim-a"})  # not a vision model
    conn.close()
