"""Every rkllm structure of every ABI generation matches the layouts computed from the vendor headers."""

from __future__ import annotations

import ctypes
import re
from ctypes import POINTER, c_int, c_void_p
from pathlib import Path

import pytest

from rkio.runtime.rkllm.layouts import Generation, build_layout
from rkio.runtime.rkllm.prototypes import signatures

TABLES = Path(__file__).resolve().parents[2] / "data" / "rkllm-abi"
TABLE_OF = {
    Generation.V1_1: "v1.1.0-1.1.4.txt",
    Generation.V1_2_0: "v1.2.0.txt",
    Generation.V1_2_1B1: "v1.2.1b1.txt",
    Generation.V1_2_1: "v1.2.1-1.2.3.txt",
    Generation.V1_3_0: "v1.3.0.txt",
}
_STRUCT = re.compile(r"^(\w+) size=(\d+) align=(\d+)$")
_FIELD = re.compile(r"^\s+(\w+)\s+off=\s*(\d+) size=(\d+)$")


def parse_table(path: Path) -> dict[str, tuple[int, int, dict[str, tuple[int, int]]]]:
    """``struct -> (size, align, {field: (offset, size)})`` from one golden table."""
    structs: dict[str, tuple[int, int, dict[str, tuple[int, int]]]] = {}
    fields: dict[str, tuple[int, int]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if match := _STRUCT.match(line):
            fields = {}
            structs[match[1]] = (int(match[2]), int(match[3]), fields)
        elif match := _FIELD.match(line):
            fields[match[1]] = (int(match[2]), int(match[3]))
        else:
            raise AssertionError(f"unparsed line in {path.name}: {line!r}")
    return structs


@pytest.mark.parametrize("generation", list(Generation), ids=lambda g: g.label)
def test_every_struct_matches_golden_table(generation: Generation) -> None:
    table = parse_table(TABLES / TABLE_OF[generation])
    ours = build_layout(generation).by_c_name()
    assert set(ours) == set(table), "the generation declares exactly the header's structures"
    for name, (size, align, fields) in table.items():
        cls = ours[name]
        assert (ctypes.sizeof(cls), ctypes.alignment(cls)) == (size, align), name
        for field, (offset, field_size) in fields.items():
            descriptor = getattr(cls, field)
            assert (descriptor.offset, descriptor.size) == (offset, field_size), f"{name}.{field}"


@pytest.mark.parametrize("generation", list(Generation), ids=lambda g: g.label)
def test_input_union_members_overlay_after_the_header_fields(generation: Generation) -> None:
    layout = build_layout(generation)
    table = parse_table(TABLES / TABLE_OF[generation])
    size, _, fields = table["RKLLMInput"]
    offset, enum_size = fields["input_type"]
    union_start = -(-(offset + enum_size) // 8) * 8  # the union of pointers is 8-aligned after the enum
    for member in ("prompt_input", "embed_input", "token_input", "multimodal_input"):
        assert getattr(layout.input, member).offset == union_start
    multimodal = next(name for name in table if name.startswith("RKLLMMulti"))
    assert union_start + table[multimodal][0] == size


def test_generation_specific_fields_exist_only_where_the_header_has_them() -> None:
    layouts = {g: build_layout(g) for g in Generation}
    assert not hasattr(layouts[Generation.V1_1].param, "n_keep")
    assert hasattr(layouts[Generation.V1_2_0].param, "n_keep")
    assert hasattr(layouts[Generation.V1_2_1].param, "img_start")
    assert not hasattr(layouts[Generation.V1_3_0].param, "img_start")
    assert not hasattr(layouts[Generation.V1_2_1].infer_param, "sampling_params")
    assert hasattr(layouts[Generation.V1_3_0].infer_param, "max_new_tokens")


@pytest.mark.parametrize("generation", list(Generation), ids=lambda g: g.label)
def test_result_callback_returns_int_from_1_2_1(generation: Generation) -> None:
    callback = build_layout(generation).result_callback
    expected = c_int if generation >= Generation.V1_2_1 else None
    assert callback._restype_ is expected
    assert callback._argtypes_[1:] == (c_void_p, c_int)


@pytest.mark.parametrize("generation", list(Generation), ids=lambda g: g.label)
def test_function_signatures_follow_the_generation(generation: Generation) -> None:
    layout = build_layout(generation)
    functions = signatures(layout)
    assert functions["rkllm_createDefaultParam"] == (layout.param, [])  # returned by value
    init_callback = functions["rkllm_init"][1][2]
    if generation >= Generation.V1_3_0:
        assert layout.callback is not None
        assert init_callback is POINTER(layout.callback)
    else:
        assert init_callback is layout.result_callback
    clear = functions.get("rkllm_clear_kv_cache")
    expected_args = {Generation.V1_1: None, Generation.V1_2_0: 2, Generation.V1_2_1B1: 2}.get(generation, 4)
    assert (None if clear is None else len(clear[1])) == expected_args
    newer = {"rkllm_get_kv_cache_size", "rkllm_set_function_tools", "rkllm_set_cross_attn_params"}
    assert (newer <= set(functions)) == (generation >= Generation.V1_2_1)
    assert ("rkllm_set_chat_template" in functions) == (generation >= Generation.V1_2_0)
    for name, (restype, _) in functions.items():
        if name != "rkllm_createDefaultParam":
            assert restype is c_int, name
