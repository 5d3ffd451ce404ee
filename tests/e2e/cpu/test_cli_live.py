"""The rkio client commands against a live CPU server, and doctor on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from cpu_server import MODEL, Server

pytestmark = pytest.mark.model


def rkio(env: Mapping[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rkio", *args], env=dict(env), input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def test_list_json_shows_the_default_model(server: Server) -> None:
    result = rkio(server.env, "list", "--json")
    assert result.returncode == 0, result.stderr
    names = [m["name"] for m in json.loads(result.stdout)["models"]]
    assert any(name.split(":")[0] == MODEL for name in names)


def test_run_answers_the_capital_question_in_one_sentence_that_ends_by_itself(server: Server) -> None:
    # issue 13's "done when", with the model's own settings (no sampling flags): --verbose only adds the
    # token counts and the finish reason on stderr
    result = rkio(server.env, "run", MODEL, "What is the capital of France?", "--verbose")
    assert result.returncode == 0, result.stderr
    answer = result.stdout.strip()
    assert "Paris" in answer and "\n" not in answer and len(answer) < 120, answer
    assert answer.endswith(".") and answer.count(". ") == 0, answer  # one sentence
    assert result.stderr.rstrip().endswith("; stop]"), result.stderr  # ended by itself, not by a limit


def test_run_reads_piped_stdin(server: Server) -> None:
    result = rkio(server.env, "run", MODEL, "--max-tokens", "20", stdin="Say hello.")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_load_ps_unload(server: Server) -> None:
    assert rkio(server.env, "load", MODEL).returncode == 0
    loaded = json.loads(rkio(server.env, "ps", "--json").stdout)["models"]
    assert [m["name"].split(":")[0] for m in loaded] == [MODEL]
    plain = rkio(server.env, "ps").stdout.splitlines()
    assert plain[0].split("\t")[:2] == ["NAME", "SIZE"] and plain[1].startswith(MODEL)
    assert rkio(server.env, "unload", MODEL).returncode == 0
    assert json.loads(rkio(server.env, "ps", "--json").stdout)["models"] == []


def test_unknown_model_is_a_one_line_error(server: Server) -> None:
    result = rkio(server.env, "run", "no-such-model", "hi")
    assert result.returncode == 1
    assert result.stderr.startswith("rkio: ") and len(result.stderr.strip().splitlines()) == 1


def test_client_without_a_server_explains(server: Server) -> None:
    env = {**server.env, "RKIO_PORT": "9"}
    result = rkio(env, "list")
    assert result.returncode == 1 and "is `rkio serve` running" in result.stderr


def test_doctor_json_on_this_machine(models_dir: Path, server: Server) -> None:
    result = rkio(server.env, "doctor", "--json")
    report = json.loads(result.stdout)
    assert report["runtime"]["selected"] == "llamacpp"
    assert report["runtime"]["llama_cpp"]
    assert report["memory"]["total_bytes"] > 0 and report["memory"]["budget_bytes"] > 0
    assert report["models_dir"] == str(models_dir)
    [model] = [m for m in report["models"]["models"] if m["name"] == MODEL]
    assert model["runtime"] == "llamacpp" and model["max_context_len"] == 2048
    assert model["footprint_bytes"] > model["size_bytes"] > 50 << 20
    assert MODEL in [p["name"] for p in report["models"]["fit_together"]]
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert result.returncode == (1 if errors else 0)
