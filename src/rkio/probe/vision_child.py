"""The probe child's vision ops: an RKNN encoder beside the rkllm handles, and multimodal generations.

    {"op": "encoder_load", "slot": "e", "path": "vision.rknn"}
        -> {"ok": true, "image_tokens", "embed_dim", "width", "height", "api_version"}
    {"op": "generate_image", "slot": "a", "encoder": "e", "image_b64": ..., "prompt": "<image>..."}
        -> {"ok": true, "text", "encode_s"}
"""

from __future__ import annotations

import base64
import time
from typing import Any

from rkio.runtime.base import GenerateParams, MultimodalInput, Runtime, Token

OPS = frozenset({"encoder_load", "generate_image"})


def handle(handles: dict[str, Runtime], encoders: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    from rkio.runtime.images import Preprocessing, preprocess
    from rkio.runtime.rknn import RknnEncoder, load_library
    from rkio.runtime.rknn.layouts import TENSOR_UINT8

    slot = str(request.get("slot", "a"))
    if request["op"] == "encoder_load":
        encoder = RknnEncoder(load_library(), str(request["path"]))
        encoders[slot] = encoder
        info = encoder.info
        return {"ok": True, "image_tokens": info.image_tokens, "embed_dim": info.embed_dim,
                "width": info.width, "height": info.height, "api_version": info.api_version}
    encoder = encoders[str(request["encoder"])]
    info = encoder.info
    tensor = preprocess(base64.b64decode(request["image_b64"]), Preprocessing(info.width, info.height))
    started = time.monotonic()
    rows = encoder.encode(tensor.data, TENSOR_UINT8, True)
    encode_s = time.monotonic() - started
    pieces: list[str] = []

    def collect(token: Token) -> bool:
        pieces.append(token.text)
        return True

    multimodal = MultimodalInput(prompt=str(request["prompt"]), image_embed=rows,
                                 n_image_tokens=info.image_tokens, image_width=info.width,
                                 image_height=info.height)
    handles[slot].generate(GenerateParams(multimodal=multimodal), collect)
    return {"ok": True, "text": "".join(pieces), "encode_s": encode_s}
