"""CPU per token at board pace, rkio beside GatekeeperZA/RKLLM-API-Server, both on the simulator at once.

    .venv/bin/python benchmarks/peer_board_pace.py --gatekeeper PATH --gatekeeper-python PY [--tokens 200]

PATH is a checkout of https://github.com/GatekeeperZA/RKLLM-API-Server (the board-pace issue compares
against it); PY a Python with its requirements.txt installed (``python -m venv V && V/bin/pip install -r
PATH/requirements.txt``). Both servers load the same simulated model (flavour 1.2.3, 60 ms per token) and
stream the same OpenAI chat request at the same time, so the host's state is the same for both. CPU of
every thread of every process of each server, from /proc/<pid>/task/*/schedstat. Not part of ``make
bench``: it needs the peer's code, which this repository does not carry.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from board_pace_bench import cpu_ns
from http_bench import process_tree, start_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import simkit

TOKEN_US = 60_000


def start_gatekeeper(home: Path, checkout: Path, python: str) -> tuple[subprocess.Popen[bytes], str]:
    simkit.make_model(home / "models" / "bench" / "bench.rkllm", 32 << 20, max_context_limit=8192,
                      kv_bytes_per_token=64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gunicorn = str(Path(python).parent / "gunicorn")
    env = {**os.environ, "RKLLM_MODELS_ROOT": str(home / "models"), "HOME": str(home),
           "RKLLM_LIB_PATH": str(simkit.sim_library("1.2.3")), "RKLLM_SIM_STATE": str(home / "sim-state"),
           "RKLLM_SIM_TOKEN_US": str(TOKEN_US), "RKLLM_SIM_PREFILL_US": "0", "RKLLM_SIM_INIT_MS": "0",
           "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_LOG_LEVEL": "warning",
           "RKLLM_API_LOG_LEVEL": "WARNING", "RKLLM_API_LOG_FILE": str(home / "api.log")}
    proc = subprocess.Popen([gunicorn, "-c", "gunicorn.config.py", "api:app"], cwd=checkout, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("GatekeeperZA did not start")


def stream(url: str, model: str, tokens: int) -> int:
    """Stream one OpenAI chat reply; the completion tokens it reports."""
    body = {"model": model, "stream": True, "max_tokens": tokens, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"bench words here [[n={tokens}]]"}]}
    used = 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                used = usage["completion_tokens"] if usage else used
    return used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gatekeeper", type=Path, required=True)
    parser.add_argument("--gatekeeper-python", required=True)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rkio-peer-pace-") as tmp:
        rkio, rkio_url = start_server(Path(tmp) / "rkio", TOKEN_US, args.tokens)
        peer, peer_url = start_gatekeeper(Path(tmp) / "peer", args.gatekeeper.resolve(),
                                          args.gatekeeper_python)
        try:
            peer_model = httpx.get(peer_url + "/v1/models", timeout=30).json()["data"][0]["id"]
            servers = {"rkio": (rkio, rkio_url, "bench"), "GatekeeperZA": (peer, peer_url, peer_model)}
            for _, url, model in servers.values():
                stream(url, model, 4)  # load the model, warm up
            pids = {name: process_tree(proc.pid) for name, (proc, _, _) in servers.items()}
            rows: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.runs):
                results: dict[str, float] = {}

                def one(name: str, results: dict[str, float] = results) -> None:
                    _, url, model = servers[name]
                    before = sum(cpu_ns(p) for p in pids[name])
                    n = stream(url, model, args.tokens)
                    results[name] = (sum(cpu_ns(p) for p in pids[name]) - before) / 1000 / max(n, 1)
                    print(f"{name}: {n} tokens, {results[name]:.0f} µs CPU per token", flush=True)

                threads = [threading.Thread(target=one, args=(name,)) for name in servers]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                for name, value in results.items():
                    rows[name].append(value)
        finally:
            for proc in (rkio, peer):
                proc.terminate()
                proc.wait()
    print(f"\n60 ms per token, side by side; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for name, values in rows.items():
        print(f"{name:<13} median {statistics.median(values):.0f} µs CPU per token "
              f"({100 * statistics.median(values) / TOKEN_US:.2f} % of a core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
