"""Building the simulated librkllmrt and making simulated model files."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

FLAVOURS: tuple[str, ...] = ("1.1.4", "1.2.0", "1.2.1", "1.2.3", "1.3.0")
REPO = Path(__file__).resolve().parent.parent.parent
SIM_SOURCES = REPO / "sim"

GiB = 1024**3
MiB = 1024**2
DOMAIN_BYTES = 4 * GiB
N_DOMAINS = 16
DEFAULT_RAM = 16 * GiB
DEFAULT_KV_BYTES_PER_TOKEN = 28672
DEFAULT_BUFFER_BYTES = 256 * MiB
DEFAULT_REPLY_TOKENS = 12
DEFAULT_MAX_CONTEXT_LIMIT = 4096
VOCAB = 32000


_built: set[Path] = set()


def sim_dir() -> Path:
    """Where the simulator builds live: ``$RKIO_SIM_DIR`` or ``build/sim`` in the repository."""
    env = os.environ.get("RKIO_SIM_DIR")
    return Path(env) if env else REPO / "build" / "sim"


def sim_library(flavour: str) -> Path:
    """Path of ``librkllmrt.so`` for ``flavour``; (re)builds the simulator with make when needed."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown simulator flavour {flavour!r}; known: {', '.join(FLAVOURS)}")
    out = sim_dir().resolve()
    lib = out / flavour / "librkllmrt.so"
    if out not in _built and (SIM_SOURCES / "Makefile").exists():
        out.mkdir(parents=True, exist_ok=True)
        # Parallel test processes may all ask at once; one builds, the others wait for it.
        with open(out / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subprocess.run(
                ["make", "-s", "-C", str(SIM_SOURCES), f"OUT={out}"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        _built.add(out)
    if not lib.exists():
        raise FileNotFoundError(f"{lib} missing and sim/ sources not available to build it")
    return lib


def make_model(path: Path | str, size_bytes: int = 0, **header: object) -> Path:
    """Creates a sparse simulated model file of ``size_bytes`` with an ``RKSIM`` header.

    Header keys: max_context_limit, fault, token_us, prefill_us, init_ms, kv_bytes_per_token,
    buffer_bytes, reply_tokens, npu_cores, vocab_size, embd_size.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = "RKSIM\n" + "".join(f"{k}={v}\n" for k, v in header.items()) + "\n"
    data = text.encode()
    with open(p, "wb") as f:
        f.write(data)
        f.truncate(max(size_bytes, len(data)))
    return p


def footprint(
    size_bytes: int,
    max_context_len: int,
    kv_bytes_per_token: int = DEFAULT_KV_BYTES_PER_TOKEN,
    buffer_bytes: int = DEFAULT_BUFFER_BYTES,
) -> int:
    """Bytes the simulator reserves for a model: file + KV cache for max_context_len + buffers."""
    return size_bytes + kv_bytes_per_token * max_context_len + buffer_bytes
