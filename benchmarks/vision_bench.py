"""What rkio adds around a vision encoder: preprocessing per image, and a cached image's cost.

    .venv/bin/python benchmarks/vision_bench.py [--runs 5]

Preprocessing (``rkio.runtime.images.preprocess``: decode, pad to a square, bicubic resize to 392x392, lay
out the tensor) is timed for a 1920x1080 JPEG and PNG photo-like image, for uint8 NHWC (the rknn-llm demo's
input) and float32 NCHW normalised input. The encoder itself is the board's (~3.3 s per 392x392 image for
Qwen2-VL-2B on RK3588, rkllm-runtime.md); a repeated image costs a SHA-256 of its bytes instead
(``rkio.engine.runner.vision``), timed here too.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import time
from collections.abc import Callable

from PIL import Image

from rkio.runtime.images import Preprocessing, preprocess


def photo(fmt: str) -> bytes:
    """A 1920x1080 image with gradients and noise, so the codecs work as on a photo."""
    noise = Image.effect_noise((1920, 1080), 64).convert("RGB")
    gradient = Image.linear_gradient("L").resize((1920, 1080)).convert("RGB")
    out = io.BytesIO()
    options = {"quality": 90} if fmt == "JPEG" else {}
    Image.blend(noise, gradient, 0.5).save(out, fmt, **options)
    return out.getvalue()


def timed(runs: int, fn: Callable[[], object]) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    uint8 = Preprocessing(392, 392)
    floats = Preprocessing(392, 392, as_float=True, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28))
    for fmt in ("JPEG", "PNG"):
        data = photo(fmt)
        for name, how in (("uint8 NHWC", uint8), ("float32 NCHW", floats)):
            seconds = timed(args.runs, lambda d=data, h=how: preprocess(d, h))
            print(f"preprocess 1920x1080 {fmt} ({len(data) >> 10} KiB) -> 392x392 {name}: "
                  f"{seconds * 1e3:.1f} ms")
        seconds = timed(args.runs, lambda d=data: hashlib.sha256(d).hexdigest())
        print(f"cache key (sha256) of the {fmt}: {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
