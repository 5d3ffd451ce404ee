"""Full-stack HTTP benchmark on the simulator: one stream's tokens/s, server CPU per token, and TTFT.

Starts ``rkio serve`` on a free port with a simulated model (token cost 0, so the numbers measure rkio's own
overhead: runner IPC, engine, HTTP framing), or measures an already running server with ``--url``.

    .venv/bin/python benchmarks/http_bench.py [--tokens 4000] [--runs 3] [--token-us 0]
                                              [--url http://host:port --model M]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
# One client for all requests, as a real one keeps its connection: a new httpx client per request
# costs ~30 ms (SSL context, connection) that would be counted as the server's time to first token.
CLIENT = httpx.Client(timeout=600)
sys.path.insert(0, str(REPO / "tests"))


def cpu_seconds(pid: int) -> float:
    """user+system CPU of ``pid`` and its children that were reaped (runner processes are separate)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return [pid, *[q for c in children for q in process_tree(c)]]


def stream_once(url: str, model: str, tokens: int, api: str) -> tuple[float, float, int, int]:
    """(ttft seconds, total seconds, chunks, tokens generated) of one streamed request."""
    content = f"bench words here [[n={tokens}]]"
    if api == "openai":
        path, body = "/v1/chat/completions", {
            "model": model, "stream": True, "max_tokens": tokens, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": content}]}
    else:
        path, body = "/api/chat", {"model": model, "options": {"num_predict": tokens},
                                   "messages": [{"role": "user", "content": content}]}
    start = time.perf_counter()
    ttft = None
    chunks = generated = 0
    with CLIENT.stream("POST", url + path, json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line or line.startswith(":"):
                continue
            chunks += 1
            if ttft is None and ('"content":"' in line and '"content":""' not in line):
                ttft = time.perf_counter() - start
            if '"completion_tokens"' in line or '"eval_count"' in line:
                data = json.loads(line.removeprefix("data: "))
                generated = data["usage"]["completion_tokens"] if "usage" in data else data["eval_count"]
    return ttft or 0.0, time.perf_counter() - start, chunks, generated


def start_server(home: Path, token_us: int, tokens: int, extra: tuple[str, ...] = (),
                 prefix: tuple[str, ...] = (), startup_s: float = 30.0, env: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen[bytes], str]:
    """``rkio serve`` on the simulator (under ``prefix``, e.g. valgrind, when given; ``env`` added to its
    environment); returns once /health answers."""
    import simkit

    lib = simkit.sim_library("1.2.3")
    context = tokens + 1024  # the sim ends a reply at max_context_len
    simkit.make_model(home / "models" / "bench" / "bench.rkllm", 32 << 20, max_context_limit=context,
                      kv_bytes_per_token=64)
    (home / "models" / "bench" / "model.toml").write_text(
        f"max_context_len = {context}\nmax_new_tokens = {context}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RKIO_RKLLM_LIB": str(lib), "RKIO_RKLLM_ABI": "1.2.3", "RKIO_HOME": str(home),
           "RKLLM_SIM_STATE": str(home / "sim-state"), "RKLLM_SIM_TOKEN_US": str(token_us),
           "RKLLM_SIM_PREFILL_US": "0", "RKLLM_SIM_INIT_MS": "0", **(env or {})}
    # a budget far above the planner's KV estimate for a huge context (the sim itself charges 64 B/token)
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "rkio", "serve", "--port", str(port),
                             "--runtime", "rkllm",
                             "--models-dir", str(home / "models"), "--memory-budget", "64GiB",
                             "--npu-lock", str(home / "npu.lock"),
                             "--log-level", "warning", *extra], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


@contextlib.contextmanager
def serving(token_us: int, tokens: int, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """``start_server`` in a temporary home for the ``with`` block; yields its URL, stops it after."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), token_us, tokens, extra)
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url")
    parser.add_argument("--model", default="bench")
    parser.add_argument("--token-us", type=int, default=0,
                        help="simulated cost per token (0: rkio overhead only)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = (None, args.url) if args.url else start_server(Path(tmp), args.token_us, args.tokens)
        try:
            stream_once(url, args.model, 8, "openai")  # load the model, warm up
            for api in ("openai", "ollama"):
                pids = process_tree(proc.pid) if proc else []
                cpu0 = sum(cpu_seconds(p) for p in pids)
                results = [stream_once(url, args.model, args.tokens, api) for _ in range(args.runs)]
                cpu = sum(cpu_seconds(p) for p in pids) - cpu0
                total_tokens = sum(r[3] for r in results)
                best = min(results, key=lambda r: r[1])
                print(f"{api:6s}: {best[3] / best[1]:9.0f} tokens/s (best of {args.runs}, {best[3]} tokens), "
                      f"TTFT {min(r[0] for r in results) * 1000:.1f} ms, "
                      f"chunks/request {results[0][2]}, "
                      + (f"server CPU {cpu / total_tokens * 1e6:.1f} us/token (gateway + runner)"
                         if proc else "server CPU n/a (--url)"))
        finally:
            if proc:
                proc.terminate()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
