"""``rkio doctor``'s checks of a service installed by ``rkio install-service``: the unit's interpreter, the
config file, the service's user and its NPU groups, the state directory, the lock directory."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
from pathlib import Path
from typing import Any, Literal

from rkio.cli.service import CONFIG_PATH, STATE_PATH, UNIT_PATH, npu_groups
from rkio.config import Settings
from rkio.errors import ConfigError

# (severity, problem, fix)
Finding = tuple[Literal["error", "warning"], str, str]


def _unit_value(text: str, key: str) -> str | None:
    match = re.search(rf"^{key}=(.*)$", text, flags=re.M)
    return match.group(1).strip() if match else None


def _user_groups(user: pwd.struct_passwd) -> set[str]:
    names = {g.gr_name for g in grp.getgrall() if user.pw_name in g.gr_mem}
    with contextlib.suppress(KeyError):
        names.add(grp.getgrgid(user.pw_gid).gr_name)
    return names


def check_service(root: Path = Path("/")) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The service's summary and what is wrong with it; (None, []) when no service is installed."""
    unit_path = root / UNIT_PATH
    try:
        unit = unit_path.read_text()
    except OSError:
        return None, []
    found: list[Finding] = []
    reinstall = "sudo rkio install-service (with the rkio you want the service to run)"
    exec_start = _unit_value(unit, "ExecStart") or ""
    python = exec_start.split(" ", 1)[0]
    if not python or not os.access(python, os.X_OK):
        found.append(("error", f"the service's interpreter {python or '(none)'} does not exist", reinstall))
    config = root / CONFIG_PATH
    settings: Settings | None = None
    try:
        settings = Settings.load(config)
    except ConfigError as exc:
        found.append(("error", f"the service's config: {exc}",
                      f"edit {config}, or remove it and {reinstall}"))
    user_name = _unit_value(unit, "User") or "root"
    state = root / STATE_PATH
    try:
        user = pwd.getpwnam(user_name)
    except KeyError:
        found.append(("error", f"the service's user {user_name} does not exist", reinstall))
    else:
        missing = sorted(set(npu_groups(root)) - _user_groups(user))
        if missing:
            found.append(("error", f"the service's user {user_name} is not in {', '.join(missing)}: "
                                   "it cannot open the NPU",
                          f"sudo usermod -aG {','.join(missing)} {user_name}"))
        try:
            if state.stat().st_uid != user.pw_uid:
                found.append(("warning", f"{state} does not belong to {user_name}",
                              f"sudo chown -R {user_name}: {state}"))
        except OSError:
            found.append(("warning", f"{state} does not exist (systemd creates it at the first start)",
                          reinstall))
    if settings is not None and settings.npu_lock is not None and not settings.npu_lock.parent.is_dir():
        found.append(("error", f"the NPU lock's directory {settings.npu_lock.parent} does not exist",
                      f"set npu_lock in {config} to a file in /run/lock"))
    summary = {"unit": str(unit_path), "exec": exec_start, "user": user_name, "config": str(config),
               "models_dir": str(settings.models_dir) if settings else None}
    return summary, found
