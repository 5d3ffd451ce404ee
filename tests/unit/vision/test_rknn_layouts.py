"""The RKNN structs as rkio declares them have rknn_api.h's LP64 sizes and offsets."""

from __future__ import annotations

import pytest

from rkio.runtime.rknn import layouts
from rkio.runtime.rknn.library import RknnSetupError, check_layouts, check_sdk_version


def test_declared_sizes_are_the_headers() -> None:
    assert layouts.declared_sizes() == layouts.EXPECTED_SIZES
    # fl (int8) is followed by 3 padding bytes before zp (int32); pass_through (uint8) by 3 before h_stride
    assert layouts.TensorAttr.zp.offset == layouts.TensorAttr.fl.offset + 4
    assert layouts.TensorAttr.h_stride.offset == layouts.TensorAttr.pass_through.offset + 4
    assert (layouts.Input.buf.offset, layouts.Input.type.offset) == (8, 24)
    assert (layouts.Output.index.offset, layouts.Output.buf.offset, layouts.Output.size.offset) == (4, 8, 16)


def test_a_library_reporting_other_sizes_is_refused() -> None:
    check_layouts("rknn_tensor_attr=376 rknn_input=32")
    with pytest.raises(RknnSetupError, match="rknn_input is 40 bytes"):
        check_layouts("rknn_tensor_attr=376 rknn_input=40")


@pytest.mark.parametrize("version", ["1.6.0 (9a7b5d24c@2023-12-13T17:31:11)", "garbage", "3.0.0"])
def test_sdk_versions_other_than_2_x_are_refused(version: str) -> None:
    with pytest.raises(RknnSetupError):
        check_sdk_version(version)
    check_sdk_version("2.3.2 (429f97ae6b@2025-04-09T09:09:27)")
