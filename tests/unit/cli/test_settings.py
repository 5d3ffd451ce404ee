"""Settings: every flag, RKIO_* variable and TOML key still works, and a bad value is refused with an error
that names where it came from (``rkio serve`` shows it on one line and exits 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rkio.cli import serve
from rkio.cli.main import main
from rkio.config import LogLevel, Settings
from rkio.errors import ConfigError
from rkio.units import GiB, MiB, parse_duration, parse_size

# one valid textual value per setting, and what it becomes
VALID = {
    "host": ("0.0.0.0", "0.0.0.0"), "port": ("9000", 9000), "models_dir": ("/m", Path("/m")),
    "state_dir": ("/s", Path("/s")), "runtime": ("llamacpp", "llamacpp"), "memory_budget": ("6GiB", 6 * GiB),
    "memory_reserve": ("1G", GiB), "max_queue": ("5", 5), "queue_timeout": ("90s", 90.0),
    "keep_alive": ("-1", -1.0), "api_key": ("k", "k"), "npu_lanes": ("2", 2), "load_timeout": ("1m", 60.0),
    "first_token_timeout": ("2m", 120.0), "token_stall_timeout": ("250ms", 0.25),
    "stop_grace": ("3", 3.0), "preload": ("a, b", ("a", "b")), "reserved_domains": ("0,3", (0, 3)),
    "cors_origins": ("http://x", ("http://x",)), "max_body_bytes": ("64KiB", 64 << 10),
    "default_model": ("qwen", "qwen"), "log_level": ("WARNING", LogLevel.WARNING),
    "npu_lock": ("/l/npu.lock", Path("/l/npu.lock")),
    "rpc_unix": ("/tmp/rkllm.sock", "/tmp/rkllm.sock"), "rpc_tcp": ("127.0.0.1:9000", "127.0.0.1:9000"),
    "rpc_udp": ("9001", "9001"), "rpc_lease_ttl": ("2m", 120.0), "rpc_stream_ttl": ("30s", 30.0),
    "rpc_stream_default": ("Callbacks", "callbacks"), "rpc_max_frame": ("1MiB", 1 << 20),
    "board_name": ("opi5-3", "opi5-3"),
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("RKIO_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("RKIO_HOME", str(tmp_path / "home"))


def test_every_serve_flag_is_a_setting_and_parses() -> None:
    assert {dest for _, dest, _, _ in serve.FLAGS} == set(VALID)
    for flag, dest, _, _ in serve.FLAGS:
        assert flag == "--" + dest.replace("_", "-")


@pytest.mark.parametrize("name", sorted(VALID))
def test_each_setting_from_flag_environment_and_toml(name: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    text, expected = VALID[name]
    assert getattr(Settings.load(overrides={name: text}), name) == expected
    toml = tmp_path / "rkio.toml"
    toml.write_text(f"{name} = {text!r}\n".replace("'", '"'))
    assert getattr(Settings.load(toml), name) == expected
    monkeypatch.setenv(f"RKIO_{name.upper()}", text)
    assert getattr(Settings.load(), name) == expected


def test_toml_native_types_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "rkio.toml"
    toml.write_text('port = 7000\nnpu_lanes = 3\npreload = ["a", "b"]\nreserved_domains = [0, 1]\n'
                    'keep_alive = 60\nmemory_budget = 1073741824\n')
    monkeypatch.setenv("RKIO_CONFIG", str(toml))
    monkeypatch.setenv("RKIO_NPU_LANES", "2")
    s = Settings.load(overrides={"port": "7100", "runtime": None})
    assert (s.port, s.npu_lanes, s.preload, s.reserved_domains, s.keep_alive, s.memory_budget) == (
        7100, 2, ("a", "b"), (0, 1), 60.0, GiB)
    assert s.runtime == "auto" and s.memory_reserve == 512 * MiB


def test_constructor_ignores_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIO_PORT", "9999")
    assert Settings().port == 8080 and Settings.load().port == 9999


@pytest.mark.parametrize(("name", "value", "why"), [
    ("npu_lanes", "0", "greater than or equal to 1"),
    ("max_queue", "0", "greater than or equal to 1"),
    ("port", "70000", "less than or equal to 65535"),
    ("port", "http", "valid integer"),
    ("runtime", "npu", "'auto', 'rkllm' or 'llamacpp'"),
    ("log_level", "loud", "'debug', 'info', 'warning' or 'error'"),
    ("memory_budget", "6 gigs", "not a size"),
    ("memory_budget", "0", "greater than 0"),
    ("queue_timeout", "soon", "not a duration"),
    ("token_stall_timeout", "0", "greater than 0"),
    ("stop_grace", "-1", "greater than or equal to 0"),
    ("reserved_domains", "0,16", "less than 16"),
    ("max_body_bytes", "0", "greater than or equal to 1"),
])
def test_bad_values_name_their_origin(name: str, value: str, why: str, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError) as raised:
        Settings.load(overrides={name: value})
    assert f"{flag}={value!r}" in str(raised.value) and why in str(raised.value)
    monkeypatch.setenv(f"RKIO_{name.upper()}", value)
    with pytest.raises(ConfigError, match=f"RKIO_{name.upper()}=") as raised:
        Settings.load()
    assert why in str(raised.value)
    monkeypatch.delenv(f"RKIO_{name.upper()}")
    toml = tmp_path / "rkio.toml"
    toml.write_text(f'{name} = "{value}"\n')
    with pytest.raises(ConfigError, match=re.escape(f"TOML key {name}={value!r} in {toml}")) as raised:
        Settings.load(toml)
    assert why in str(raised.value)


def test_the_winning_layer_is_the_one_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIO_NPU_LANES", "0")
    Settings.load(overrides={"npu_lanes": "2"})  # the flag wins over the bad variable
    with pytest.raises(ConfigError, match="RKIO_NPU_LANES") as raised:
        Settings.load(overrides={"npu_lanes": None})
    assert "--npu-lanes" not in str(raised.value)


def test_unknown_toml_key_and_broken_or_missing_file(tmp_path: Path) -> None:
    toml = tmp_path / "rkio.toml"
    toml.write_text("npu_lane = 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"TOML key npu_lane in {toml}: unknown setting")):
        Settings.load(toml)
    toml.write_text("port = \n")
    with pytest.raises(ConfigError, match=re.escape(f"config file {toml}")):
        Settings.load(toml)
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml")


@pytest.mark.parametrize(("argv", "env", "named"), [
    (["serve", "--npu-lanes", "0"], {}, "--npu-lanes='0'"),
    (["serve"], {"RKIO_MAX_QUEUE": "-5"}, "RKIO_MAX_QUEUE='-5'"),
    (["serve", "--log-level", "shout"], {}, "--log-level='shout'"),
])
def test_serve_refuses_a_bad_value_on_one_line_with_status_2(argv: list[str], env: dict[str, str], named: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rkio serve: invalid setting: ") and named in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_other_commands_report_a_bad_variable_on_one_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RKIO_MEMORY_RESERVE", "lots")
    assert main(["doctor", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rkio doctor: invalid setting: RKIO_MEMORY_RESERVE='lots'") and err.count("\n") == 1


@pytest.mark.parametrize(("text", "size"), [("6GiB", 6 * GiB), ("512M", 512 * MiB), ("1.5k", 1536),
                                            ("1048576", MiB), (4096, 4096)])
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25),
                                               ("-1", -1.0), (90, 90.0), (2.5, 2.5)])
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", [True, 1.5, [1], None, "", "6 gigs", "-1G"])
def test_what_is_not_a_size_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [True, [1], None, "soon", "5 m", "m"])
def test_what_is_not_a_duration_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)  # type: ignore[arg-type]
