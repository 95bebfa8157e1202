"""Which pump pumpctl (and the HIL suite) talks to: port and key, from wherever given.

For the port and for the key separately, the first of these that gives one wins:

1. the command line: --port URL, --key FILE;
2. --state DIR: an emulator's state directory, where `pumpctl emulate` (host_tools/launch.py)
   writes emulator.json while it runs (its protocol port, console port and key file);
3. the environment: PUMPCTL_PORT, PUMPCTL_KEY;
4. the per-user config file, $XDG_CONFIG_HOME/micropump/pumpctl.toml (default
   ~/.config/micropump/pumpctl.toml):

       port = "/dev/ttyACM0"        # any pyserial URL
       key = "~/pump.key"
       # or: state = "~/.local/state/micropump/emulator"   (an emulator, as --state)

5. the emulator `pumpctl emulate` runs in its default state directory, if it is running.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from host_tools.paths import user_dir

EMULATOR_FILE = "emulator.json"  # in an emulator's state directory, while it runs
CONFIG_FILE = "pumpctl.toml"
CONFIG_KEYS = ("port", "key", "state")


class ConfigError(ValueError):
    """A config file or state directory that cannot be used; the message says why."""


def default_emulator_state() -> Path:
    return user_dir("state") / "emulator"


def config_path() -> Path:
    return user_dir("config") / CONFIG_FILE


def write_emulator_file(state_dir: Path, info: dict) -> Path:
    """Record a running emulator's ports and key in its state directory (atomically)."""
    path = Path(state_dir) / EMULATOR_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_emulator_file(state_dir: str | os.PathLike) -> dict:
    """The port and key of the emulator running in `state_dir`; ConfigError if none runs."""
    state = Path(state_dir).expanduser()
    path = state / EMULATOR_FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no emulator runs in {state} (no {EMULATOR_FILE}): start one with "
                          f"`pumpctl emulate --state {state}`") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict) or not {"port", "key", "pid"} <= info.keys():
        raise ConfigError(f"{path} is not an emulator record (port, key, pid)")
    if not _alive(int(info["pid"])):
        raise ConfigError(f"the emulator of {state} is not running any more (process "
                          f"{info['pid']} has ended): start it again with "
                          f"`pumpctl emulate --state {state}`")
    return info


def read_config(path: Path | None = None) -> dict:
    """The per-user config file's settings ({} when there is none)."""
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    import tomllib  # only with a config file: every pumpctl run reads this

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r} (known: "
                          f"{', '.join(CONFIG_KEYS)})")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(f"config file {path}: {bad[0]} must be a string")
    return data


@dataclass
class Target:
    port: str | None
    key: str | None
    source: str  # where the port came from, for messages


def resolve(port: str | None = None, key: str | None = None, state: str | None = None,
            env: dict | None = None, config: Path | None = None) -> Target:
    """The pump to talk to (see the module docstring for the order)."""
    env = os.environ if env is None else env
    # (where, values, paired): an emulator record's key goes only with its own port
    sources: list[tuple[str, dict, bool]] = [("--port/--key", {"port": port, "key": key},
                                              False)]
    if state:
        sources.append((f"--state {state}", read_emulator_file(state), True))
    sources.append(("PUMPCTL_PORT/PUMPCTL_KEY", {"port": env.get("PUMPCTL_PORT"),
                                                 "key": env.get("PUMPCTL_KEY")}, False))
    cfg_path = config or config_path()
    cfg = read_config(cfg_path)
    if cfg.get("state"):
        sources.append((f"{cfg_path} (state)", read_emulator_file(cfg["state"]), True))
    sources.append((str(cfg_path), cfg, False))
    default = default_emulator_state()
    if (default / EMULATOR_FILE).exists():
        try:
            sources.append((f"the emulator in {default}", read_emulator_file(default), True))
        except ConfigError:
            pass  # a stale record: as if none ran
    found_port = found_key = None
    where = ""
    for name, values, paired in sources:
        if found_port is None and values.get("port"):
            found_port, where = values["port"], name
        if (found_key is None and values.get("key")
                and (not paired or values.get("port") == found_port)):
            found_key = os.path.expanduser(values["key"])
    return Target(found_port, found_key, where)
