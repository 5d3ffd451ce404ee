"""What each rkllm generation can do (the capability matrix of docs/runtime.md)."""

from __future__ import annotations

from rkio.runtime.base import Feature
from rkio.runtime.rkllm.layouts import Generation

# the generation that introduced each feature
_SINCE: dict[Feature, Generation] = {
    Feature.TOKEN_INPUT: Generation.V1_1,
    Feature.EMBED_INPUT: Generation.V1_1,
    Feature.MULTIMODAL_INPUT: Generation.V1_1,
    Feature.LORA: Generation.V1_1,
    Feature.LAST_HIDDEN_LAYER: Generation.V1_1,
    Feature.LOGITS: Generation.V1_2_0,  # RKLLMResult.logits and RKLLM_INFER_GET_LOGITS arrived in 1.2.0
    Feature.PROMPT_CACHE: Generation.V1_1,
    Feature.KEEP_HISTORY: Generation.V1_2_0,
    Feature.CLEAR_KV_CACHE: Generation.V1_2_0,
    Feature.CHAT_TEMPLATE: Generation.V1_2_0,
    Feature.EMBED_FLASH: Generation.V1_2_0,
    Feature.CPU_MASK: Generation.V1_2_0,
    Feature.ROLE: Generation.V1_2_1,
    Feature.ENABLE_THINKING: Generation.V1_2_1,
    Feature.PERF_STATS: Generation.V1_2_1,
    Feature.CLEAR_KV_CACHE_RANGES: Generation.V1_2_1,
    Feature.KV_CACHE_SIZE: Generation.V1_2_1,
    Feature.FUNCTION_TOOLS: Generation.V1_2_1,
    Feature.CROSS_ATTN: Generation.V1_2_1,
    Feature.N_BATCH: Generation.V1_2_1,
    Feature.PAUSE: Generation.V1_2_1,  # the result callback returns int from 1.2.1
    Feature.PER_RUN_SAMPLING: Generation.V1_3_0,
    Feature.PER_RUN_MAX_NEW_TOKENS: Generation.V1_3_0,
    Feature.IGNORE_EOS: Generation.V1_3_0,
    Feature.MULTI_INSTANCE: Generation.V1_3_0,  # or a 1.2.1-generation library of version 1.2.2+
}


def features_of(generation: Generation, version: str | None) -> frozenset[Feature]:
    """Features of ``generation``; ``version`` refines it inside the 1.2.1-1.2.3 generation.

    RUN_ASYNC is never listed: generation always goes through the blocking rkllm_run (rkllm_run_async is
    bound but hangs in 1.2.1, rknn-llm #320/#321).
    """
    features = {feature for feature, since in _SINCE.items() if generation >= since}
    # several handles in one process produce garbage before 1.2.2 (rknn-llm #367)
    if generation is Generation.V1_2_1 and version in ("1.2.2", "1.2.3"):
        features.add(Feature.MULTI_INSTANCE)
    return frozenset(features)
