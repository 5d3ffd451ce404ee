"""TTFT per chat turn on a board profile: KV reuse against a full prefill of the history every turn.

Starts ``rkio serve`` with a simulated model at the vendor's RK3588 numbers for Qwen2.5-1.5B w8a8
(airockchip/rknn-llm benchmark.md: TTFT 378 ms for a 128-token prompt, ~3 ms per prompt token; 16.7
tokens/s, ~60 ms per token) and runs conversations through the OpenAI API as a client does (each reply
sent back as the assistant message): a 10-turn and a 30-turn conversation with and without reuse, and two
conversations alternating on the same model.

    .venv/bin/python benchmarks/kv_reuse_bench.py [--prefill-us 3000] [--token-us 60000] [--reply 8]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from http_bench import start_server

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
CLIENT = httpx.Client(timeout=600)
CONTEXT = 16384
USER_WORDS = 90  # with the template's words a first turn is ~128 prompt tokens, as in the vendor's table
SYSTEM = "You are a helpful assistant running on a small board. Answer briefly and precisely."


def start(home: Path, reuse: bool, prefill_us: int, token_us: int) -> tuple[subprocess.Popen[bytes], str]:
    """``rkio serve`` with the model "bench" at the board profile (the registry reads model files on
    demand, so the model and its model.toml are rewritten before anything loads it)."""
    import simkit

    proc, url = start_server(home, token_us, CONTEXT - 1024)
    folder = home / "models" / "bench"
    simkit.make_model(folder / "bench.rkllm", 32 << 20, max_context_limit=CONTEXT, kv_bytes_per_token=64,
                      prefill_us=prefill_us, token_us=token_us)
    (folder / "model.toml").write_text(f"max_context_len = {CONTEXT}\nkv_reuse = {str(reuse).lower()}\n")
    return proc, url


def turn(url: str, model: str, messages: list[dict[str, str]], reply: int) -> tuple[float, str]:
    """(TTFT seconds, reply text) of one streamed chat turn."""
    import json

    body = {"model": model, "stream": True, "max_tokens": reply + 4, "messages": messages}
    start_t = time.perf_counter()
    ttft = None
    parts: list[str] = []
    with CLIENT.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            delta = json.loads(line.removeprefix("data: "))["choices"]
            text = delta[0].get("delta", {}).get("content") if delta else None
            if text:
                ttft = ttft if ttft is not None else time.perf_counter() - start_t
                parts.append(text)
    return ttft or 0.0, "".join(parts)


def user_message(conversation: int, k: int, reply: int) -> str:
    words = " ".join(f"c{conversation}w{k}x{i}" for i in range(USER_WORDS))
    return f"[[n={reply}]] {words}"


def conversation(url: str, model: str, turns: int, reply: int, tag: int = 0) -> list[float]:
    messages = [{"role": "system", "content": SYSTEM}]
    ttfts = []
    for k in range(turns):
        messages.append({"role": "user", "content": user_message(tag, k, reply)})
        ttft, text = turn(url, model, messages, reply)
        messages.append({"role": "assistant", "content": text})
        ttfts.append(ttft)
    return ttfts


def alternating(url: str, model: str, turns: int, reply: int) -> list[float]:
    """Two conversations taking turns on one model: each turn evicts the other's cache."""
    chats: list[list[dict[str, str]]] = [[{"role": "system", "content": SYSTEM}] for _ in range(2)]
    ttfts = []
    for k in range(turns):
        for tag, messages in enumerate(chats):
            messages.append({"role": "user", "content": user_message(tag, k, reply)})
            ttft, text = turn(url, model, messages, reply)
            messages.append({"role": "assistant", "content": text})
            ttfts.append(ttft)
    return ttfts


def row(label: str, ttfts: list[float]) -> str:
    ms = [t * 1000 for t in ttfts]
    picks = {n: ms[n - 1] for n in (1, 2, 5, 10, 20, 30) if n <= len(ms)}
    cols = "  ".join(f"t{n}={v:6.0f}" for n, v in picks.items())
    return f"{label:26s} {cols}   last/first x{ms[-1] / ms[0]:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill-us", type=int, default=3000)
    parser.add_argument("--token-us", type=int, default=60000)
    parser.add_argument("--reply", type=int, default=8, help="tokens per reply (TTFT is what is measured)")
    parser.add_argument("--long", type=int, default=30, help="turns of the long conversation")
    args = parser.parse_args()
    print(f"board profile: {args.prefill_us / 1000:.1f} ms per prompt token, {args.token_us / 1000:.0f} ms "
          f"per token, {args.reply}-token replies; TTFT in ms at turn N")
    for reuse in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start(Path(tmp), reuse, args.prefill_us, args.token_us)
            try:
                label = "reuse" if reuse else "no reuse"
                turn(url, "bench", [{"role": "user", "content": "[[n=1]] warm up"}], 1)
                print(row(f"10 turns, {label}", conversation(url, "bench", 10, args.reply, 1)), flush=True)
                long = conversation(url, "bench", args.long, args.reply, 2)
                print(row(f"{args.long} turns, {label}", long), flush=True)
                print(row(f"2 alternating, {label}", alternating(url, "bench", 5, args.reply)), flush=True)
            finally:
                proc.terminate()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
