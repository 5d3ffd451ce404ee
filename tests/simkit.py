"""Helpers for tests that run on the simulated librkllmrt (``sim/``): building it, making model files,
reading the shared NPU-memory state, and predicting the simulated model's replies.

The reply rules here mirror ``sim/reply.c`` exactly; docs/simulator.md describes them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAVOURS: tuple[str, ...] = ("1.1.4", "1.2.0", "1.2.1", "1.2.3", "1.3.0")
REPO = Path(__file__).resolve().parent.parent
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

# The simulator's template when rkllm_set_chat_template was never called (ChatML, empty system prompt).
DEFAULT_PREFIX = "<|im_start|>user\n"
DEFAULT_POSTFIX = "<|im_end|>\n<|im_start|>assistant\n"

RUN_NORMAL = 0
RUN_WAITING = 1

_UTF8_CHARS = ("é", "中", "😀")
_THINK_WORDS_MAX = 8
_WS = " \t\n\r\v\f"
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


# ---------------------------------------------------------------------------------------------- state


def _proc_identity(pid: int) -> tuple[int, bool] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19]), fields[0] in ("Z", "X", "x")


def _alive(pid: int, start_time: int) -> bool:
    ident = _proc_identity(pid)
    return ident is not None and not ident[1] and ident[0] == start_time


def read_state(state_path: Path | str) -> dict[str, Any]:
    """The simulator's machine-wide NPU memory state, shaped like ``rkllm_sim_state()``'s JSON.

    Reservations of dead processes are left out (the library prunes them on its next access).
    """
    state: dict[str, Any] = {
        "path": str(state_path),
        "domain_bytes": DOMAIN_BYTES,
        "n_domains": N_DOMAINS,
        "reservations": [],
        "overcommits": 0,
        "overcommit_log": [],
        "oom_kills": [],
    }
    p = Path(state_path)
    lines: list[str] = []
    if p.exists():
        with open(p) as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            lines = f.read().splitlines()
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "overcommits":
            state["overcommits"] = int(rest)
        elif kind == "res":
            parts = rest.split(" ", 7)
            rid, pid, start, base, nbytes, shares, version = parts[:7]
            if not _alive(int(pid), int(start)):
                continue
            domains = {}
            if shares != "-":
                for item in shares.split(","):
                    d, b = item.split(":")
                    domains[d] = int(b)
            state["reservations"].append(
                {
                    "id": int(rid),
                    "pid": int(pid),
                    "start_time": int(start),
                    "base_domain": int(base),
                    "bytes": int(nbytes),
                    "domains": domains,
                    "version": version,
                    "model": parts[7] if len(parts) > 7 else "",
                }
            )
        elif kind == "oc":
            t, pid, okind, nbytes, mode, domain, *model = rest.split(" ", 6)
            state["overcommit_log"].append(
                {
                    "time_ms": int(t),
                    "pid": int(pid),
                    "kind": okind,
                    "bytes": int(nbytes),
                    "mode": mode,
                    "domain": int(domain),
                    "model": model[0] if model else "",
                }
            )
        elif kind == "oom":
            t, victim, killer, nbytes = rest.split()
            state["oom_kills"].append(
                {
                    "time_ms": int(t),
                    "victim_pid": int(victim),
                    "killer_pid": int(killer),
                    "bytes": int(nbytes),
                }
            )
    res = state["reservations"]
    state["used_bytes"] = sum(r["bytes"] for r in res)
    state["domain_used"] = [sum(r["domains"].get(str(d), 0) for r in res) for d in range(N_DOMAINS)]
    return state


@dataclass
class SimEnv:
    """Simulator settings for one test; ``env()`` gives the environment for a process using the sim."""

    state_path: Path
    ram_bytes: int | None = None
    overcommit: str | None = None  # fail | segv | garbage | oom
    token_us: int | None = None
    prefill_us: int | None = None
    init_ms: int | None = None
    fault: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fresh(cls, directory: Path | str, **kwargs: Any) -> SimEnv:
        """A SimEnv whose state file lives in ``directory`` (e.g. pytest's tmp_path), so tests never share."""
        return cls(state_path=Path(directory) / "rkllm-sim-state.txt", **kwargs)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) plus the RKLLM_SIM_* variables of this SimEnv."""
        env = dict(os.environ if base is None else base)
        values = {
            "RKLLM_SIM_STATE": str(self.state_path),
            "RKLLM_SIM_RAM": self.ram_bytes,
            "RKLLM_SIM_OVERCOMMIT": self.overcommit,
            "RKLLM_SIM_TOKEN_US": self.token_us,
            "RKLLM_SIM_PREFILL_US": self.prefill_us,
            "RKLLM_SIM_INIT_MS": self.init_ms,
            "RKLLM_SIM_FAULT": self.fault,
        }
        for key, value in values.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        env.update(self.extra)
        return env

    def apply(self) -> None:
        """Exports the variables into this process (for in-process ctypes use)."""
        for key, value in self.env().items():
            if key.startswith("RKLLM_SIM_") or key in self.extra:
                os.environ[key] = value
        for key in [k for k in os.environ if k.startswith("RKLLM_SIM_")]:
            if key not in self.env():
                del os.environ[key]

    def read_state(self) -> dict[str, Any]:
        return read_state(self.state_path)


# ---------------------------------------------------------------------------------------------- replies


def _strip_markers(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        skip_role = False
        if text.startswith("<|", i):
            end = text.find("|>", i + 2)
            if end < 0:
                out.append(text[i])
                i += 1
                continue
            skip_role = text[i + 2 : end] in ("im_start", "start_header_id")
            i = end + 2
        elif text.startswith("<start_of_turn>", i):
            i += len("<start_of_turn>")
            skip_role = True
        elif text.startswith("<end_of_turn>", i):
            i += len("<end_of_turn>")
        else:
            out.append(text[i])
            i += 1
            continue
        out.append(" ")
        if skip_role:
            while i < n and text[i] not in _WS and text[i] != "<":
                i += 1
    return "".join(out)


def _split(text: str) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    for ch in text:
        if ch in _WS:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        words.append("".join(cur))
    return words


@dataclass(frozen=True)
class ParsedPrompt:
    """What the simulated model takes from a (templated) prompt."""

    words: tuple[str, ...]
    n: int | None
    think: bool
    tool: bool
    utf8: bool
    prompt_tokens: int


def parse_prompt(text: str) -> ParsedPrompt:
    """Echo words, directives and the prompt token count of ``text`` (as the library sees it)."""
    n: int | None = None
    think = tool = utf8 = False
    words: list[str] = []
    for w in _split(_strip_markers(text)):
        if len(w) >= 4 and w.startswith("[[") and w.endswith("]]"):
            body = w[2:-2]
            if body.startswith("n=") and len(body) > 2:
                digits = body[2:]
                n = int(digits) if digits.lstrip("-").isdigit() else 0
            think |= body == "think"
            tool |= body == "tool"
            utf8 |= body == "utf8"
            continue
        if "<|" in w or "|>" in w:
            continue
        words.append(w)
    return ParsedPrompt(tuple(words) or ("ok",), n, think, tool, utf8, max(1, len(_split(text))))


def apply_default_template(prompt: str) -> str:
    """The prompt as the simulator templates it when no chat template was set."""
    return DEFAULT_PREFIX + prompt + DEFAULT_POSTFIX


def prompt_tokens(prompt: str, template: tuple[str, str, str] | None = None) -> int:
    """Prompt token count the simulator reports (perf.prefill_tokens) for a fresh conversation."""
    system, prefix, postfix = template if template is not None else ("", DEFAULT_PREFIX, DEFAULT_POSTFIX)
    return parse_prompt(system + prefix + prompt + postfix).prompt_tokens


def token_id(text: str | bytes) -> int:
    """The token_id the simulator reports for a token's text.

    FNV-1a of the UTF-8 bytes with one leading space dropped, modulo 32000.
    """
    data = text.encode() if isinstance(text, str) else text
    if data.startswith(b" "):
        data = data[1:]
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % VOCAB


def expected_callbacks(prompt: str, n_tokens: int, lora: str | None = None) -> list[tuple[bytes, int]]:
    """The first ``n_tokens`` raw callbacks (text bytes, state) the simulator produces for ``prompt``.

    ``prompt`` may be raw user text or an already templated prompt: template markers and role names are
    not echoed either way. Multi-byte characters ([[utf8]]) arrive one byte per callback, all but the last
    with state RKLLM_RUN_WAITING.
    """
    p = parse_prompt(prompt)
    out: list[tuple[bytes, int]] = []
    k = 0
    think_words = min(len(p.words), _THINK_WORDS_MAX)
    while len(out) < n_tokens:
        base = k
        if p.utf8:
            if k % 2 == 1:
                char = _UTF8_CHARS[(k // 2) % 3].encode()
                for i, b in enumerate(char):
                    out.append((bytes([b]), RUN_WAITING if i + 1 < len(char) else RUN_NORMAL))
                k += 1
                continue
            base = k // 2
        word = base
        text: str | None = None
        if p.think:
            if base == 0:
                text = "<think>"
            elif base == think_words + 1:
                text = "</think>"
            else:
                word = base - 1 if base <= think_words else base - think_words - 2
        if text is None:
            w = p.words[word % len(p.words)]
            text = f" {lora}:{w}" if lora else f" {w}"
        out.append((text.encode(), RUN_NORMAL))
        k += 1
    return out[:n_tokens]


def expected_reply(prompt: str, n_tokens: int, lora: str | None = None) -> list[str]:
    """The simulator's reply to ``prompt`` as whole-character token texts (WAITING pieces merged).

    ``n_tokens`` counts runtime tokens (callbacks): the reply length is ``[[n=N]]`` or the model header's
    reply_tokens (default 12), cut by max_new_tokens. A character left incomplete by the cut is dropped.
    """
    texts: list[str] = []
    pending = b""
    for data, state in expected_callbacks(prompt, n_tokens, lora):
        pending += data
        if state == RUN_NORMAL:
            texts.append(pending.decode())
            pending = b""
    return texts


def reply_length(prompt: str, reply_tokens: int = DEFAULT_REPLY_TOKENS, max_new_tokens: int = 0) -> int:
    """How many tokens the simulator generates for ``prompt`` (before context or abort cut it)."""
    p = parse_prompt(prompt)
    n = p.n if p.n is not None else reply_tokens
    return min(n, max_new_tokens) if max_new_tokens > 0 else n


def expected_text(prompt: str, n_tokens: int | None = None, lora: str | None = None) -> str:
    """The reply as one string (``n_tokens`` defaults to the reply length of ``prompt``)."""
    return "".join(expected_reply(prompt, reply_length(prompt) if n_tokens is None else n_tokens, lora))


def expected_tool_call(name: str) -> list[str]:
    """Tokens of the reply to a ``[[tool]]`` prompt once function tools are set (1.2.1+)."""
    return ["<tool_call>", "\n", '{"name": "', name, '", "arguments": {}}', "\n", "</tool_call>"]


# Every token when several handles live in one process before 1.2.2 (#367).
MULTI_INSTANCE_GARBAGE = ","
# Every token of a model in an overcommitted domain (RKLLM_SIM_OVERCOMMIT=garbage).
OVERCOMMIT_GARBAGE = "&&&&"
