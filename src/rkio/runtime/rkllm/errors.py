"""Errors of locating librkllmrt and choosing its ABI; all are load failures to the rest of rkio."""

from __future__ import annotations

from rkio.errors import LoadFailed


class RkllmSetupError(LoadFailed):
    """The runtime library cannot be used as configured."""


class LibraryNotFound(RkllmSetupError):
    """No librkllmrt.so at RKIO_RKLLM_LIB or in the usual places."""


class AbiUndetectable(RkllmSetupError):
    """The ABI generation of the library cannot be determined with certainty; RKIO_RKLLM_ABI must say it."""


class AbiMismatch(RkllmSetupError):
    """The library does not match the ABI generation it was asked to be used with."""
