"""Where pumpctl finds its pump (host_tools/config.py): --port/--key, --state DIR (the
emulator's own record of its ports and key), PUMPCTL_PORT/PUMPCTL_KEY, the per-user config
file ($XDG_CONFIG_HOME/micropump/pumpctl.toml), the running default emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from host_tools import config, pumpctl
from host_tools.launch import launch


def record(state, port, key="k", pid=None):
    state.mkdir(parents=True, exist_ok=True)
    return config.write_emulator_file(state, {"port": port, "key": str(state / key),
                                              "pid": pid or os.getpid()})


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.req("HW-3")
def test_order_command_line_state_environment_config_default(tmp_path):
    cfg = tmp_path / "pumpctl.toml"
    cfg.write_text('port = "/dev/cfg"\nkey = "~/cfg.key"\n')
    env = {"PUMPCTL_PORT": "/dev/env", "PUMPCTL_KEY": "/env.key"}
    emu = tmp_path / "emu"
    record(emu, "/dev/pts/77")
    t = config.resolve("/dev/cli", "/cli.key", str(emu), env, cfg)
    assert (t.port, t.key, t.source) == ("/dev/cli", "/cli.key", "--port/--key")
    t = config.resolve(None, None, str(emu), env, cfg)
    assert (t.port, t.key) == ("/dev/pts/77", str(emu / "k"))
    t = config.resolve(None, None, None, env, cfg)
    assert (t.port, t.key, t.source) == ("/dev/env", "/env.key", "PUMPCTL_PORT/PUMPCTL_KEY")
    t = config.resolve(None, None, None, {}, cfg)
    assert (t.port, t.key) == ("/dev/cfg", os.path.expanduser("~/cfg.key"))
    # an emulator's key never goes with another port
    t = config.resolve("/dev/ttyACM0", None, str(emu), {}, tmp_path / "none.toml")
    assert (t.port, t.key) == ("/dev/ttyACM0", None)
    # nothing anywhere: the default emulator, when it runs
    assert config.resolve(None, None, None, {}, tmp_path / "none.toml").port is None
    record(config.default_emulator_state(), "/dev/pts/78")
    t = config.resolve(None, None, None, {}, tmp_path / "none.toml")
    assert t.port == "/dev/pts/78" and t.source.startswith("the emulator in ")


@pytest.mark.req("HW-3")
def test_stale_records_and_bad_config_files_say_what_is_wrong(tmp_path):
    emu = tmp_path / "emu"
    with pytest.raises(config.ConfigError, match=r"no emulator runs in .*emu \(no "
                                                 r"emulator.json\): start one with"):
        config.resolve(None, None, str(emu), {}, tmp_path / "none.toml")
    pid = dead_pid()
    record(emu, "/dev/pts/79", pid=pid)
    with pytest.raises(config.ConfigError, match=f"not running any more \\(process {pid} "):
        config.resolve(None, None, str(emu), {}, tmp_path / "none.toml")
    cfg = tmp_path / "pumpctl.toml"
    cfg.write_text('prot = "/dev/ttyACM0"\n')
    with pytest.raises(config.ConfigError, match="unknown setting 'prot' \\(known: port, "):
        config.resolve(None, None, None, {}, cfg)
    cfg.write_text('port = /dev/ttyACM0\n')
    with pytest.raises(config.ConfigError, match="pumpctl.toml: "):
        config.resolve(None, None, None, {}, cfg)
    # a stale default emulator is as if none ran
    record(config.default_emulator_state(), "/dev/pts/80", pid=pid)
    assert config.resolve(None, None, None, {}, tmp_path / "none.toml").port is None


@pytest.mark.req("HW-3")
def test_pumpctl_state_dir_and_config_file_reach_a_running_emulator(tmp_path, capsys):
    state = tmp_path / "emu"
    with launch(state, console=False) as emu:
        info = json.loads((state / "emulator.json").read_text())
        assert info["port"] == emu.port and info["key"] == str(emu.key_path.resolve())
        assert info["pid"] == os.getpid()
        assert pumpctl.main(["--state", str(state), "--json", "status"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["pump"]["board"] == 1  # BOARD_UNIX
        # the key came with the port: a state-changing command is authenticated
        assert pumpctl.main(["--state", str(state), "time", "set", "2026-11-16T08:00",
                             "--offset", "0"]) == 0
        assert capsys.readouterr().out == (
            "time set to 2026-11-16T08:00:00 (UTC offset 0 min): done\n")
        # the config file names the state directory
        cfg = config.config_path()
        cfg.parent.mkdir(parents=True)
        cfg.write_text(f'state = "{state}"\n')
        assert pumpctl.main(["resume"]) == 3  # a new pump: nothing filled yet
        assert capsys.readouterr().err == (
            "pumpctl: error: resume refused: reservoir empty (0 U left)\n")
        cfg.unlink()
    assert not (state / "emulator.json").exists()  # removed when it stopped
    assert pumpctl.main(["--state", str(state), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pumpctl: error: no emulator runs in {state} (no emulator.json)")


@pytest.mark.req("HW-3")
def test_no_port_anywhere_says_every_way_to_give_one(capsys):
    assert pumpctl.main(["status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("pumpctl: error: no port: give --port URL or --state DIR, set "
                   "PUMPCTL_PORT, or write port = \"...\" into "
                   f"{config.config_path()}")


@pytest.mark.req("HW-2")
def test_flash_with_state_is_refused_in_one_line(tmp_path, capsys):
    assert pumpctl.main(["--state", str(tmp_path), "flash", "--board", "pico"]) == 2
    assert capsys.readouterr().err == (
        "pumpctl: error: flash deploys to a board's REPL port (--port), not to an emulator "
        "(--state)\n")


@pytest.mark.req("HW-3", "HIS-2")
def test_a_second_emulator_on_the_same_state_is_refused(tmp_path, capsys):
    state = tmp_path / "emu"
    with launch(state, console=False) as emu:
        assert emu.next_telemetry(20)  # booted: its flash file exists
        inode = (state / "flash.bin").stat().st_ino
        with pytest.raises(ValueError, match=f"an emulator already runs in {state} "
                                             f"\\(process {os.getpid()}, port {emu.port}\\)"):
            launch(state, console=False, fresh=True)
        assert (state / "flash.bin").stat().st_ino == inode  # --fresh did not delete it
        assert json.loads((state / "emulator.json").read_text())["port"] == emu.port
        code = pumpctl.main(["emulate", "--state", str(state), "--seconds", "1"])
        assert code == 2
        assert "an emulator already runs in" in capsys.readouterr().err
    with launch(state, console=False) as again:  # once it stopped, the state is free
        assert again.port
