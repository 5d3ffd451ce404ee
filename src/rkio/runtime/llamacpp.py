"""The CPU backend: GGUF models through llama.cpp (the optional ``rkio[cpu]`` extra, llama-cpp-python).

It makes rkio useful on any machine (and testable without a board). Generation runs token by token in
the caller's thread; ``abort`` sets a flag the loop checks before every token, so a generation stops
within one decode step.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rkio.errors import ContextLengthExceeded, InvalidRequest, LoadFailed, RuntimeFailure, Unsupported
from rkio.runtime.base import (
    ChatTemplateOverride,
    CrossAttnParams,
    Feature,
    FinishReason,
    GenerateParams,
    GenerationResult,
    LoadParams,
    LoraAdapter,
    Perf,
    Sampling,
    Token,
    TokenSink,
    require,
    require_mode,
)
from rkio.runtime.chat import ChatTemplate, TemplateError, guess_preset
from rkio.runtime.llamacpp_amx import construction_guard
from rkio.runtime.llamacpp_outputs import special_run
from rkio.runtime.utf8 import Utf8Reassembler

if TYPE_CHECKING:
    from llama_cpp import Llama

FEATURES = frozenset({
    Feature.TOKEN_INPUT,
    Feature.ENABLE_THINKING,  # realised by the chat template the runner renders with
    Feature.PER_RUN_SAMPLING,
    Feature.PER_RUN_MAX_NEW_TOKENS,
    Feature.SAMPLING_SEED,
    Feature.PERF_STATS,
    Feature.CLEAR_KV_CACHE,
    Feature.KV_CACHE_SIZE,
    Feature.IGNORE_EOS,
    Feature.MULTI_INSTANCE,
    Feature.JSON_SCHEMA,  # a GBNF grammar built from the schema by llama-cpp-python constrains sampling
    Feature.LAST_HIDDEN_LAYER,  # llamacpp_outputs: embedding output switched on for the run
    Feature.LOGITS,
})

_RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp picks a random seed
# Prefill runs in chunks with a look at the abort flag between them. Chunks are sized to take about
# PREFILL_SLICE_S each (bigger batches are faster per token, but an abort waits for the running chunk).
PREFILL_SLICE_S = 0.5
PREFILL_CHUNK = (8, 512)  # bounds on tokens per chunk; the first chunk has 32

def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise LoadFailed("the CPU runtime needs llama-cpp-python: pip install 'rkio[cpu]'") from exc
    return llama_cpp


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        return "unknown"


class LlamaCppRuntime:
    """``rkio.runtime.base.Runtime`` for ``*.gguf`` files."""

    def __init__(self) -> None:
        self.name = f"llamacpp-{_version()}"
        self.features = FEATURES
        self._llama: Llama | None = None
        self._params: LoadParams | None = None
        self._abort = threading.Event()
        self._running = False
        self._stop_ids: frozenset[int] = frozenset()
        self._template: ChatTemplate | None = None
        self._is_eog: Any = None
        self._grammars: dict[str, Any] = {}  # schema text -> LlamaGrammar (converting costs milliseconds)

    # ------------------------------------------------------------------------------------- lifecycle

    def load(self, params: LoadParams) -> None:
        """Load the GGUF with ``n_ctx = max_context_len``; raises ``LoadFailed`` when llama.cpp refuses."""
        if self._llama is not None:
            raise RuntimeFailure(f"{self.name}: a model is already loaded")
        llama_cpp = _llama_cpp()
        seed = params.sampling.seed
        try:
            with construction_guard(llama_cpp):
                self._llama = llama_cpp.Llama(
                    model_path=params.model_path,
                    n_ctx=params.max_context_len,
                    n_threads=params.n_threads or None,
                    seed=_RANDOM_SEED if seed is None else seed,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LoadFailed(f"llama.cpp could not load {params.model_path}: {exc}") from exc
        self._params = params
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._template = self._read_template()
        self._stop_ids = self._end_of_turn_ids()

    def destroy(self) -> None:
        """Free the model and its context (weights are unmapped, so the process RSS drops)."""
        self._abort.set()
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()
            del llama
            gc.collect()
        self._template = None

    def abort(self) -> None:
        self._abort.set()

    def is_running(self) -> bool:
        return self._running

    # ------------------------------------------------------------------------------------- generation

    def generate(self, params: GenerateParams, on_token: TokenSink) -> GenerationResult:
        """Prefill the prompt, then sample until end of turn, ``max_new_tokens``, a full context or abort."""
        llama, load = self._loaded()
        require_mode(self, params.mode)
        self._abort.clear()
        prompt = self._prompt_tokens(llama, params)
        if params.mode != "generate":  # hidden states / logits: rkllm's infer modes (llamacpp_outputs)
            outputs = special_run(llama, prompt, params.mode, self._abort)
            return GenerationResult("abort" if outputs is None else "stop", 0, outputs=outputs)
        if not prompt:
            raise InvalidRequest("the prompt is empty")
        n_ctx = min(llama.n_ctx(), load.max_context_len)  # llama.cpp pads n_ctx up to a multiple of 256
        if len(prompt) >= n_ctx:
            raise ContextLengthExceeded(
                f"the prompt has {len(prompt)} tokens but the context holds {n_ctx}")
        limit = params.max_new_tokens if params.max_new_tokens is not None else load.max_new_tokens
        sampling = params.sampling or load.sampling
        grammar = self._grammar(params.json_schema) if params.json_schema is not None else None
        llama.set_seed(_RANDOM_SEED if sampling.seed is None else sampling.seed)
        self._running = True
        try:
            # Running out of context ends the answer like max_new_tokens does: finish "length".
            return self._run(llama, prompt, min(limit, n_ctx - len(prompt)), sampling, on_token,
                             load.ignore_eos_token, grammar)
        except RuntimeError as exc:
            raise RuntimeFailure(f"{self.name}: {exc}") from exc
        finally:
            self._running = False

    def _grammar(self, schema: str) -> Any:
        """The grammar that makes sampling follow ``schema`` (llama-cpp-python's JSON-schema converter)."""
        grammar = self._grammars.get(schema)
        if grammar is None:
            try:
                grammar = _llama_cpp().LlamaGrammar.from_json_schema(schema, verbose=False)
            except Exception as exc:  # the converter raises plain Exceptions for schemas it cannot express
                raise InvalidRequest(f"the JSON schema cannot be enforced by llama.cpp: {exc}") from exc
            if len(self._grammars) >= 16:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[schema] = grammar
        return grammar

    def _run(self, llama: Llama, prompt: list[int], budget: int, sampling: Sampling,
             on_token: TokenSink, ignore_eos: bool, grammar: Any = None) -> GenerationResult:
        decoder = Utf8Reassembler()
        finish: FinishReason = "length"
        n_generated = 0
        started = time.perf_counter()
        first_at: float | None = None
        if not self._prefill(llama, prompt):
            ended = time.perf_counter()
            perf = Perf(prefill_ms=(ended - started) * 1000, prefill_tokens=len(prompt), generate_ms=0.0,
                        generate_tokens=0, memory_usage_mb=None)
            return GenerationResult(finish="abort", n_tokens=0, perf=perf)
        # The whole prompt is in the KV cache now, so llama.generate samples right away.
        tokens = llama.generate(
            prompt,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            mirostat_mode=sampling.mirostat,
            mirostat_tau=sampling.mirostat_tau,
            mirostat_eta=sampling.mirostat_eta,
            grammar=grammar,
        )
        try:
            while n_generated < budget:
                if self._abort.is_set():
                    finish = "abort"
                    break
                token = next(tokens, None)
                if token is None:
                    break
                if first_at is None:
                    first_at = time.perf_counter()
                if not ignore_eos and self.is_end_of_turn(token):
                    finish = "stop"
                    break
                n_generated += 1
                text = decoder.feed(llama.detokenize([token], special=False))
                if text and not on_token(Token(text, token)):
                    finish = "abort"
                    break
        finally:
            tokens.close()
        tail = decoder.flush()
        if tail and finish != "abort":
            on_token(Token(tail, -1))
        ended = time.perf_counter()
        prefill_end = first_at if first_at is not None else ended
        perf = Perf(prefill_ms=(prefill_end - started) * 1000, prefill_tokens=len(prompt),
                    generate_ms=(ended - prefill_end) * 1000, generate_tokens=n_generated,
                    memory_usage_mb=None)
        return GenerationResult(finish=finish, n_tokens=n_generated, perf=perf)

    def _prefill(self, llama: Llama, prompt: list[int]) -> bool:
        """Evaluate ``prompt`` into the KV cache in chunks, reusing a cached common prefix; False if aborted.

        Relies on llama-cpp-python's cache bookkeeping (``input_ids``/``n_tokens``), as its own
        ``generate`` does; with a fully cached prompt the last token is evaluated again for fresh logits.
        """
        cached = llama.input_ids[: llama.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, prompt, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(prompt) - 1)
        if keep < llama.n_tokens and not llama._ctx.kv_cache_seq_rm(-1, keep, -1):
            keep = 0  # this model's memory cannot drop a suffix (recurrent): start over
            llama.reset()  # type: ignore[no-untyped-call]
        llama.n_tokens = keep
        start, chunk = keep, 32
        # The last prompt token is always evaluated on its own, as it is when the rest is cached: llama.cpp's
        # batched and single-token kernels round differently, and a small model's greedy answer to the same
        # prompt would otherwise depend on whether it was cached.
        last = len(prompt) - 1
        while start < len(prompt):
            if self._abort.is_set():
                return False
            batch = prompt[start:min(start + chunk, last)] if start < last else prompt[last:]
            began = time.perf_counter()
            llama.eval(batch)
            per_token = max((time.perf_counter() - began) / len(batch), 1e-6)
            chunk = max(PREFILL_CHUNK[0], min(PREFILL_CHUNK[1], int(PREFILL_SLICE_S / per_token)))
            start += len(batch)
        return True

    def _prompt_tokens(self, llama: Llama, params: GenerateParams) -> list[int]:
        if params.tokens is not None:
            return list(params.tokens)
        if params.prompt is None:
            kind = "embedding input" if params.embed is not None else "multimodal input"
            raise Unsupported(kind, self.name)
        bos = self._template.bos_token if self._template else ""
        add_bos = bool(llama._model.add_bos_token()) and not (bos and params.prompt.startswith(bos))
        return list(llama.tokenize(params.prompt.encode("utf-8"), add_bos=add_bos, special=True))

    # ------------------------------------------------------------------------------------- model facts

    def chat_template(self) -> ChatTemplate | None:
        """The GGUF's own ``tokenizer.chat_template`` with the vocabulary's BOS/EOS text, if it has one."""
        return self._template

    def count_tokens(self, text: str) -> int | None:
        llama, _ = self._loaded()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def kv_cache_size(self) -> list[int]:
        llama, _ = self._loaded()
        return [int(llama.n_tokens)]

    def clear_kv_cache(self, keep_system_prompt: bool,
                       ranges: Sequence[tuple[int, int]] | None = None) -> None:
        if ranges:
            raise Unsupported(Feature.CLEAR_KV_CACHE_RANGES.value, self.name)
        llama, _ = self._loaded()
        llama.reset()  # type: ignore[no-untyped-call]
        llama._ctx.kv_cache_clear()  # type: ignore[no-untyped-call]

    def _read_template(self) -> ChatTemplate | None:
        """The GGUF's template, else (many conversions carry none) the preset its vocabulary implies."""
        assert self._llama is not None
        model = self._llama._model
        bos, eos = model.token_get_text(model.token_bos()), model.token_get_text(model.token_eos())
        source = self._llama.metadata.get("tokenizer.chat_template")
        if source:
            try:
                return ChatTemplate.from_source(source, bos_token=bos, eos_token=eos)
            except TemplateError:
                pass  # a template Jinja cannot compile: fall back to what the vocabulary says
        preset = guess_preset(self._llama.metadata.get("general.architecture"), self._is_special_token)
        return ChatTemplate.from_source(preset, bos_token=bos, eos_token=eos) if preset else None

    def _is_special_token(self, text: str) -> bool:
        assert self._llama is not None
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)) == 1

    def is_end_of_turn(self, token: int) -> bool:
        """End of generation in the vocabulary's own sense (EOS, EOT, ...) or the template's end marker."""
        llama, _ = self._loaded()
        return token in self._stop_ids or bool(self._is_eog(llama._model.vocab, token))

    def _end_of_turn_ids(self) -> frozenset[int]:
        """Single-token end-of-turn markers of the chat template (llama.cpp may not flag them all EOG)."""
        assert self._llama is not None
        ids: set[int] = set()
        for marker in self._template.stop_strings if self._template else ():
            if self._is_special_token(marker):
                ids.update(self._llama.tokenize(marker.encode("utf-8"), add_bos=False, special=True))
        return frozenset(ids)

    def _loaded(self) -> tuple[Llama, LoadParams]:
        if self._llama is None or self._params is None:
            raise RuntimeFailure(f"{self.name}: no model loaded")
        return self._llama, self._params

    # ------------------------------------------------------------------------------------- not offered

    def load_lora(self, adapter: LoraAdapter) -> None:
        require(self, Feature.LORA)

    def load_prompt_cache(self, path: str) -> None:
        require(self, Feature.PROMPT_CACHE)

    def release_prompt_cache(self) -> None:
        require(self, Feature.PROMPT_CACHE)

    def set_chat_template(self, template: ChatTemplateOverride) -> None:
        require(self, Feature.CHAT_TEMPLATE)

    def set_function_tools(self, system_prompt: str, tools_json: str, tool_response_str: str) -> None:
        require(self, Feature.FUNCTION_TOOLS)

    def set_cross_attn_params(self, params: CrossAttnParams) -> None:
        require(self, Feature.CROSS_ATTN)
