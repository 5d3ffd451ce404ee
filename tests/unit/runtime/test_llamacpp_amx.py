"""Loading on a CPU where llama.cpp would use its (broken) AMX kernels: no extra buffer types then."""

from __future__ import annotations

import types
from typing import Any

import pytest

from rkio.runtime import llamacpp
from rkio.runtime.base import LoadParams

AMX_INFO = b"CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | REPACK = 1 | "
PLAIN_INFO = b"CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1 | "


class ModelParams:
    use_extra_bufts = True


class FakeLlama:
    """Builds its params from the bindings' default inside ``__init__``, as ``llama_cpp.Llama`` does."""

    built: list[ModelParams]

    def __init__(self, bindings: Any, **kwargs: Any) -> None:
        self.model_params = bindings.llama_model_default_params()
        FakeLlama.built.append(self.model_params)
        raise ValueError("stop here: only the params matter")


def fake_llama_cpp(system_info: bytes) -> types.SimpleNamespace:
    bindings = types.SimpleNamespace(llama_model_default_params=ModelParams)
    FakeLlama.built = []
    return types.SimpleNamespace(
        llama_cpp=bindings,
        llama_print_system_info=lambda: system_info,
        Llama=lambda **kwargs: FakeLlama(bindings, **kwargs),
    )


@pytest.mark.parametrize(("info", "extra_buffers"), [(AMX_INFO, False), (PLAIN_INFO, True)])
def test_extra_buffers_are_off_only_where_amx_is_used(monkeypatch: pytest.MonkeyPatch, info: bytes,
                                                      extra_buffers: bool) -> None:
    fake = fake_llama_cpp(info)
    monkeypatch.setattr(llamacpp, "_llama_cpp", lambda: fake)
    with pytest.raises(llamacpp.LoadFailed):
        llamacpp.LlamaCppRuntime().load(LoadParams(model_path="m.gguf"))
    [params] = FakeLlama.built
    assert params.use_extra_bufts is extra_buffers
    # the bindings' default is back in place afterwards
    assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is True
