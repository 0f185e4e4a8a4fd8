"""`filmroll install-service` (what `make install` runs): the systemd unit, the config and the command, in place.

Installs, under `destdir` (default `/`; packagers and tests pass another root):
- `etc/systemd/system/filmroll.service`, from `systemd/filmroll.service` with `ExecStart=` pointing at the wrapper;
- `etc/systemd/system/filmroll.service.d/fsview.conf` when the FUSE view is configured (or asked for): see that
  file for why the view needs it;
- `etc/filmroll/config.toml` from `systemd/config.example.toml`, only if there is none (never overwritten);
- `<prefix>/bin/filmroll`: a wrapper that runs this virtualenv's `filmroll` with the service's data directory and
  config as defaults (`STATE_DIRECTORY`, `CONFIGURATION_DIRECTORY`, what systemd gives the daemon), so
  `filmroll user create …` in a root shell acts on the service's data.

It never starts anything: when installing into `/` with systemd running it runs `systemctl daemon-reload` and says
what to run next.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import load_settings
from .errors import FilmrollError, InvalidInput

SOURCE = Path(__file__).resolve().parents[1] / "systemd"
UNIT = "filmroll.service"
DROP_IN = Path("filmroll.service.d") / "fsview.conf"

WRAPPER = """#!/bin/sh
# filmroll, installed by `filmroll install-service`: the virtualenv at {venv}, with the service's data directory
# and config as defaults (systemd sets the same two variables for the daemon), so commands in a root shell act on
# the service's data. Settings in the config file, FILMROLL_* variables and flags still win.
: "${{STATE_DIRECTORY:=/var/lib/filmroll}}"
: "${{CONFIGURATION_DIRECTORY:=/etc/filmroll}}"
export STATE_DIRECTORY CONFIGURATION_DIRECTORY
exec {command} "$@"
"""


@dataclass
class Installed:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    fsview: bool = False
    reloaded: bool = False


def venv_command() -> Path:
    """This virtualenv's `filmroll` (not resolved: the venv's python symlink must stay the interpreter)."""
    return Path(sys.executable).parent / "filmroll"


def unit_text(source: Path, command: str) -> str:
    text = source.read_text()
    text, count = re.subn(r"^ExecStart=\S+", f"ExecStart={command}", text, count=1, flags=re.MULTILINE)
    if count != 1:
        raise FilmrollError(f"{source} has no ExecStart= line")
    return text


def fsview_configured(config_file: Path) -> bool:
    """Does the config at `config_file` (if any) mount the FUSE view?"""
    if not config_file.exists():
        return False
    return bool(load_settings(str(config_file), environ={}).mount)


def install_service(
    *,
    destdir: Path = Path("/"),
    prefix: str = "/usr/local",
    command: Path | None = None,
    fsview: bool | None = None,
    source: Path = SOURCE,
) -> Installed:
    """Install the unit, the config (if absent) and the wrapper under `destdir`. `fsview`: install the FUSE
    drop-in (None: when the installed config has a mount point). Raises InvalidInput for a relative prefix, and
    FilmrollError when the unit files are not next to the code (an installed wheel without the checkout)."""
    if not prefix.startswith("/"):
        raise InvalidInput(f"--prefix must be absolute, not {prefix!r}")
    if not (source / UNIT).exists():
        raise FilmrollError(f"Cannot find {source / UNIT}: run install-service from a filmroll checkout")
    command = command or venv_command()
    root = Path(destdir)
    done = Installed()
    binary = f"{prefix.rstrip('/')}/bin/filmroll"

    wrapper = root / binary.lstrip("/")
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    _write(wrapper, WRAPPER.format(venv=command.parent.parent, command=_shell_quote(str(command))), 0o755)
    done.written.append(str(wrapper))

    units = root / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    _write(units / UNIT, unit_text(source / UNIT, binary), 0o644)
    done.written.append(str(units / UNIT))

    config = root / "etc/filmroll/config.toml"
    if config.exists():
        done.kept.append(str(config))
    else:
        config.parent.mkdir(parents=True, exist_ok=True)
        _write(config, (source / "config.example.toml").read_text(), 0o644)
        done.written.append(str(config))

    done.fsview = fsview_configured(config) if fsview is None else fsview
    drop_in = units / DROP_IN
    if done.fsview:
        drop_in.parent.mkdir(parents=True, exist_ok=True)
        _write(drop_in, (source / DROP_IN).read_text(), 0o644)
        done.written.append(str(drop_in))
    elif drop_in.exists():
        drop_in.unlink()

    if root == Path("/") and Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        done.reloaded = subprocess.run(["systemctl", "daemon-reload"], check=False).returncode == 0
    return done


def _write(path: Path, text: str, mode: int) -> None:
    temporary = path.with_name(path.name + ".filmroll-new")
    temporary.write_text(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
