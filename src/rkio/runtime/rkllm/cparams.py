"""Typed rkio parameters -> the C structures of one rkllm generation, refusing what it cannot express.

The builders return the structure together with everything it points into, so the caller keeps the
buffers alive for exactly as long as the library may read them.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, Structure, c_float, c_int32, pointer
from dataclasses import dataclass, field
from typing import Any

from rkio.errors import InvalidRequest, Unsupported
from rkio.runtime.base import Feature, GenerateParams, LoadParams, MultimodalInput, Sampling
from rkio.runtime.rkllm.layouts import (
    INFER_GENERATE,
    INFER_GET_LAST_HIDDEN_LAYER,
    INFER_GET_LOGITS,
    INPUT_EMBED,
    INPUT_MULTIMODAL,
    INPUT_PROMPT,
    INPUT_TOKEN,
    SAMPLING_FIELDS,
    Generation,
    Layout,
    float_buffer,
)


@dataclass
class Run:
    """The arguments of one rkllm_run and the buffers they point into."""

    input: Structure
    infer: Structure
    max_new_tokens: int  # the limit in effect, to tell "length" from "stop"
    keepalive: list[Any] = field(default_factory=list)


class Marshaller:
    """Builds C arguments for ``layout``'s generation; ``name`` is the runtime name used in errors."""

    def __init__(self, layout: Layout, features: frozenset[Feature], name: str) -> None:
        self.layout = layout
        self.features = features
        self.name = name

    def _require(self, feature: Feature | str, wanted: bool) -> None:
        supported = isinstance(feature, Feature) and feature in self.features
        if wanted and not supported:
            raise Unsupported(feature.value if isinstance(feature, Feature) else feature, self.name)

    def load_param(self, default: Structure, params: LoadParams) -> Structure:
        """Fill the library's default RKLLMParam with ``params``."""
        g = self.layout.generation
        param = default
        param.model_path = params.model_path.encode()
        param.max_context_len = params.max_context_len
        param.max_new_tokens = params.max_new_tokens
        _copy_sampling(params.sampling, param)
        param.skip_special_token = params.skip_special_token
        param.is_async = params.is_async
        extend = param.extend_param
        extend.base_domain_id = params.base_domain_id
        # n_keep and embed_flash are hints 1.1 has no field for; its runtime behaves as with the defaults
        self._require("n_keep", params.n_keep != -1 and g < Generation.V1_2_0)
        if g >= Generation.V1_2_0:
            param.n_keep = params.n_keep
            extend.embed_flash = int(params.embed_flash)
        self._require(Feature.CPU_MASK, params.enabled_cpus_mask != 0)
        if params.enabled_cpus_mask:
            extend.enabled_cpus_mask = params.enabled_cpus_mask
            extend.enabled_cpus_num = bin(params.enabled_cpus_mask).count("1")
        self._require(Feature.N_BATCH, params.n_batch != 1)
        self._require("use_cross_attn", params.use_cross_attn and g < Generation.V1_2_1)
        if g >= Generation.V1_2_1:
            extend.n_batch = params.n_batch
            extend.use_cross_attn = int(params.use_cross_attn)
        self._require(Feature.IGNORE_EOS, params.ignore_eos_token)
        if g >= Generation.V1_3_0:
            param.ignore_eos_token = params.ignore_eos_token
        return param

    def run(self, params: GenerateParams, load: LoadParams) -> Run:
        """rkllm_run's input and infer params for ``params``; ``load`` supplies the defaults in effect."""
        if load.n_batch != 1:
            raise Unsupported("generation with n_batch > 1", self.name)
        self._require(Feature.ROLE, params.role != "user")
        self._require(Feature.ENABLE_THINKING, params.enable_thinking)
        self._require(Feature.KEEP_HISTORY, params.keep_history)
        self._require(Feature.PER_RUN_SAMPLING, params.sampling is not None)
        self._require(Feature.PER_RUN_MAX_NEW_TOKENS, params.max_new_tokens is not None)
        run = Run(self.layout.input(), self.layout.infer_param(), load.max_new_tokens)
        self._fill_input(run, params)
        infer = run.infer
        infer.mode = self._infer_mode(params)
        if params.lora is not None:
            infer.lora_params = pointer(self.layout.lora_param(params.lora.encode()))
        if params.prompt_cache is not None:
            cache_params = params.prompt_cache
            cache = self.layout.prompt_cache_param(int(cache_params.save), cache_params.path.encode())
            infer.prompt_cache_params = pointer(cache)
        if self.layout.generation >= Generation.V1_2_0:
            infer.keep_history = int(params.keep_history)
        if self.layout.sampling_param is not None:
            if params.sampling is not None:
                sampling = self.layout.sampling_param()
                _copy_sampling(params.sampling, sampling)
                infer.sampling_params = pointer(sampling)
            if params.max_new_tokens is not None:
                infer.max_new_tokens = params.max_new_tokens
                run.max_new_tokens = params.max_new_tokens
        return run

    def _infer_mode(self, params: GenerateParams) -> int:
        """RKLLMInferMode for ``params.mode``; a mode the generation lacks is Unsupported."""
        if params.mode == "hidden":
            self._require(Feature.LAST_HIDDEN_LAYER, True)
            return INFER_GET_LAST_HIDDEN_LAYER
        if params.mode == "logits":
            self._require(Feature.LOGITS, True)
            return INFER_GET_LOGITS
        return INFER_GENERATE

    def _fill_input(self, run: Run, params: GenerateParams) -> None:
        given = [params.prompt is not None, params.tokens is not None, params.embed is not None,
                 params.multimodal is not None]
        if sum(given) != 1:
            raise InvalidRequest("exactly one of prompt, tokens, embed or multimodal must be given")
        rk_input = run.input
        if self.layout.generation >= Generation.V1_2_1:
            rk_input.role = _keep(run, params.role)
            rk_input.enable_thinking = params.enable_thinking
        if params.prompt is not None:
            rk_input.input_type = INPUT_PROMPT
            rk_input.prompt_input = _keep(run, params.prompt)
        elif params.tokens is not None:
            ids = (c_int32 * len(params.tokens))(*params.tokens)
            run.keepalive.append(ids)
            rk_input.input_type = INPUT_TOKEN
            rk_input.token_input.input_ids = ctypes.cast(ids, POINTER(c_int32))
            rk_input.token_input.n_tokens = len(params.tokens)
        elif params.embed is not None:
            rk_input.input_type = INPUT_EMBED
            rk_input.embed_input.embed = self._floats(run, params.embed)
            rk_input.embed_input.n_tokens = params.n_embed_tokens
        elif params.multimodal is not None:
            rk_input.input_type = INPUT_MULTIMODAL
            self._fill_multimodal(run, rk_input.multimodal_input, params.multimodal)

    def _fill_multimodal(self, run: Run, target: Structure, value: MultimodalInput) -> None:
        g = self.layout.generation
        target.prompt = _keep(run, value.prompt)
        image = target.image if g >= Generation.V1_3_0 else target
        image.image_embed = self._floats(run, value.image_embed)
        image.n_image_tokens = value.n_image_tokens
        if g >= Generation.V1_2_1B1:
            image.n_image = value.n_image
            image.image_width = value.image_width
            image.image_height = value.image_height
        else:
            extended = value.n_image != 1 or value.image_width or value.image_height
            self._require("multimodal n_image/image size", bool(extended))

    @staticmethod
    def _floats(run: Run, data: bytes) -> Any:
        buffer = float_buffer(data)
        run.keepalive.append(buffer)
        return ctypes.cast(buffer, POINTER(c_float))


def _keep(run: Run, text: str) -> bytes:
    # a string stored through an anonymous union member must outlive the call on its own
    data = text.encode()
    run.keepalive.append(data)
    return data


def _copy_sampling(sampling: Sampling, target: Structure) -> None:
    # Sampling.seed has no rkllm counterpart; rkllm sampling is seeded by the runtime itself
    for name, _ in SAMPLING_FIELDS:
        setattr(target, name, getattr(sampling, name))
