"""rkio: a crash-safe LLM server for Rockchip NPUs over librkllmrt, with a CPU fallback."""

__version__ = "0.1.0"
