"""The oracle for the simulated model's text; mirrors ``sim/reply.c`` rule for rule (docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass

from simkit.library import DEFAULT_REPLY_TOKENS, VOCAB

# The simulator's template when rkllm_set_chat_template was never called (ChatML, empty system prompt).
DEFAULT_PREFIX = "<|im_start|>user\n"
DEFAULT_POSTFIX = "<|im_end|>\n<|im_start|>assistant\n"

RUN_NORMAL = 0
RUN_WAITING = 1

_UTF8_CHARS = ("é", "中", "😀")
_THINK_WORDS_MAX = 8
_WS = " \t\n\r\v\f"


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


def hidden_row(word: str, embd_size: int = 64) -> list[float]:
    """The hidden state the simulator reports for a prompt token ``word`` (sim/api_run.c hidden_value)."""
    token = token_id(word)
    row = []
    for k in range(embd_size):
        x = ((token * 2654435761) ^ ((k + 1) * 40503)) & 0xFFFFFFFF
        x ^= x >> 13
        x = (x * 0x5BD1E995) & 0xFFFFFFFF
        x ^= x >> 15
        row.append((x % 2001) / 1000.0 - 1.0)
    return row


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


def context_digest(context: str, lora: str | None = None) -> str:
    """The word a ``context_reply=1`` model starts every reply with: ``ctx`` + FNV-1a-32 (hex) of the
    adapter the context was computed under, a 0x02 byte and the context (sim/kv_context.c)."""
    h = 2166136261
    for b in (lora or "").encode() + b"\x02" + context.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"ctx{h:08x}"


def expected_context_reply(context: str, n_tokens: int, lora: str | None = None) -> list[str]:
    """The reply of a ``context_reply=1`` model whose whole KV context (the cache's text, then the run's
    templated input) is ``context``: the digest word, then the echo of the context's words."""
    return [f" {context_digest(context, lora)}", *expected_reply(context, n_tokens - 1, lora)]
