"""``rkio install-service``: run rkio on a board for good, as a systemd service.

It writes the unit (``/etc/systemd/system/rkio.service``, from the package's ``rkio/data/rkio.service``) with
the interpreter that runs this command, writes ``/etc/rkio/config.toml`` unless one exists, creates
``/var/lib/rkio/{models,state}`` and, as root on the real system, the unprivileged ``rkio`` user in the
groups that own the NPU's device nodes. It prints what it did and the commands that start the service; it
never starts anything itself. ``--root DIR`` writes under DIR instead of ``/`` (packaging, tests) and then
creates no user.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

UNIT_PATH = Path("etc/systemd/system/rkio.service")
CONFIG_PATH = Path("etc/rkio/config.toml")
STATE_PATH = Path("var/lib/rkio")
SERVICE_USER = "rkio"
# who may open the NPU: the DRM render node of the RKNPU driver >= 0.9 (group render) or the misc device
# of older drivers (/dev/rknpu), which board images give to render or video
NPU_DEVICE_GLOBS = ("dev/dri/renderD*", "dev/rknpu*")
NPU_GROUPS = ("render", "video")


def package_file(name: str) -> str:
    """A data file shipped in the package (``rkio/data``)."""
    return resources.files("rkio").joinpath("data", name).read_text()


def npu_groups(root: Path = Path("/")) -> list[str]:
    """The groups the service's user needs: those owning the NPU's device nodes, and the usual ones
    (render, video) where this machine has them. A group systemd cannot resolve would stop the unit."""
    names: set[str] = set()
    for pattern in NPU_DEVICE_GLOBS:
        for device in root.glob(pattern):
            try:
                gid = device.stat().st_gid
                if gid != 0:
                    names.add(grp.getgrgid(gid).gr_name)
            except (OSError, KeyError):
                continue
    for name in NPU_GROUPS:
        try:
            grp.getgrnam(name)
            names.add(name)
        except KeyError:
            continue
    return sorted(names)


def render_unit(python: str, user: str = SERVICE_USER, groups: list[str] | None = None) -> str:
    groups_line = (f"SupplementaryGroups={' '.join(groups)}" if groups
                   else "# (no NPU device group on the machine that installed this unit)")
    template = Template(package_file("rkio.service"))
    return template.substitute(python=python, user=user, groups_line=groups_line)


@dataclass
class Installer:
    root: Path
    python: str
    user: str = SERVICE_USER
    system: bool = False  # the real system as root: also create the user and hand it the state directory

    def run(self) -> list[str]:
        """Install; returns one line per thing done."""
        done: list[str] = []
        groups = npu_groups(self.root)
        unit = self.root / UNIT_PATH
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(render_unit(self.python, self.user, groups))
        done.append(f"wrote {unit} (runs {self.python} -m rkio as {self.user}"
                    + (f", groups {', '.join(groups)})" if groups else ")"))
        config = self.root / CONFIG_PATH
        if config.exists():
            done.append(f"kept {config} (already there)")
        else:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(package_file("config.toml"))
            done.append(f"wrote {config}")
        state = self.root / STATE_PATH
        for sub in ("models", "state"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        done.append(f"created {state}/models and {state}/state")
        if self.system:
            done += self._user(groups, state)
        return done

    def _user(self, groups: list[str], state: Path) -> list[str]:
        done = []
        try:
            pwd.getpwnam(self.user)
            done.append(f"user {self.user} exists")
        except KeyError:
            nologin = shutil.which("nologin") or "/usr/sbin/nologin"
            subprocess.run(["useradd", "--system", "--user-group", "--home-dir", str(state),
                            "--no-create-home", "--shell", nologin, self.user], check=True)
            done.append(f"created the system user {self.user}")
        if groups:
            subprocess.run(["usermod", "--append", "--groups", ",".join(groups), self.user], check=True)
            done.append(f"added {self.user} to {', '.join(groups)}")
        entry = pwd.getpwnam(self.user)
        for path in (state, *state.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        done.append(f"gave {state} to {self.user}")
        return done


def cmd_install_service(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve()
    system = root == Path("/")
    if system and os.geteuid() != 0:
        print("rkio install-service: run it as root (sudo), or with --root DIR to write the files elsewhere",
              file=sys.stderr)
        return 1
    python = args.python or sys.executable
    try:
        done = Installer(root, python, args.user, system).run()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"rkio install-service: {exc}", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    print("\nnext: put models into /var/lib/rkio/models, check the setup with `rkio doctor`, then\n"
          "  sudo systemctl daemon-reload && sudo systemctl enable --now rkio\n"
          "  journalctl -u rkio -f")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("install-service", help="install rkio as a systemd service",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/", metavar="DIR", help="write under DIR instead of / (no user)")
    parser.add_argument("--user", default=SERVICE_USER, help="the service's user (default rkio)")
    parser.add_argument("--python", metavar="PATH",
                        help="interpreter for ExecStart (default: the one running this command)")
    parser.set_defaults(func=cmd_install_service)
