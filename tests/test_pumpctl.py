"""pumpctl, the command line: tables, --json, progress, one-line errors and exit codes.

Part 1 runs pumpctl.main in-process against the fake pump peer (the firmware's Pump + Link
on CPython behind socket://). Part 2 is end to end: the firmware on the MicroPython unix
port behind a pty (host_tools/launch.py), pumpctl run as a separate process.

Exit codes: 0 done, 1 bolus did not complete, 2 bad input, 3 refused, 4 link problem.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from host_tools import client as C
from host_tools import pumpctl
from protocol import spec
from tests.test_client import KEY, PumpPeer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def peer():
    p = PumpPeer(step_ms=500)
    yield p
    p.close()


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "pump.key"
    path.write_text(KEY.hex() + "\n")
    return path


@pytest.fixture
def ctl(peer, keyfile, capsys):
    """ctl(*args) -> (exit code, stdout, stderr) of `pumpctl --port PEER --key KEY args`."""

    def run(*args, key=True, port=None):
        argv = ["--port", port or peer.url]
        if key:
            argv += ["--key", str(keyfile)]
        code = pumpctl.main(argv + [str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return run


def one_line_error(err: str, code: int, want: int) -> str:
    assert code == want, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pumpctl: error: "), err
    return lines[0]


# ====================================================================== part 1: fake peer
@pytest.mark.req("LNK-2")
def test_status_table(ctl):
    code, out, _ = ctl("status")
    assert code == 0
    assert "micropump status" in out
    assert re.search(r"Delivery\s+│ delivering", out)
    assert re.search(r"Basal rate\s+│ 1\.0 U/h", out)
    assert re.search(r"Pump\s+│ test board, firmware 1, pulse 0\.05 U", out)


@pytest.mark.req("LNK-2")
def test_status_json(ctl):
    code, out, _ = ctl("--json", "status")
    assert code == 0
    st = json.loads(out)
    assert st["stop"] == 0 and st["delivering"] is True and st["stop_reason"] == "delivering"
    assert st["profile_rate"] == 1000 and st["alarm_names"] == []
    assert st["pump"]["pulse_mu"] == 50 and st["pump"]["schema"] == spec.schema_hash()


@pytest.mark.req("THR-3", "LNK-2", "LNK-3")
def test_bolus_waits_to_completion_and_json(ctl):
    code, out, err = ctl("bolus", "0.5")
    assert code == 0
    assert re.fullmatch(r"bolus #\d+ completed: 0\.5 of 0\.5 U delivered\n", out)
    code, out, _ = ctl("--json", "bolus", "0.25")
    data = json.loads(out)
    assert code == 0
    assert (data["ok"], data["requested"], data["delivered"], data["ending"]) == (
        True, 250, 250, "completed")
    code, out, _ = ctl("--json", "status")
    st = json.loads(out)
    assert st["last_cmd_id"] == data["cmd_id"] and st["last_detail"] == data["bolus_id"]


@pytest.mark.req("THR-3", "THR-4", "LNK-4")
def test_bolus_no_wait_then_cancel(ctl):
    code, out, _ = ctl("--json", "bolus", "0.5", "--extended", "1", "--minutes", "30",
                       "--no-wait")
    started = json.loads(out)
    assert code == 0 and started["requested"] == 1500
    code, _, err = ctl("bolus", "1")
    assert one_line_error(err, code, 3) == (
        f"pumpctl: error: bolus refused: a bolus is running (bolus #{started['bolus_id']})")
    code, out, _ = ctl("cancel-bolus")
    assert code == 0 and out == "cancel bolus: done\n"


@pytest.mark.req("LNK-4", "THR-6")
def test_refusal_exit_3_one_line_and_json(ctl):
    code, out, err = ctl("bolus", "30")
    assert one_line_error(err, code, 3) == (
        "pumpctl: error: bolus refused: over limit (max_bolus 10 U per bolus)")
    assert out == ""
    code, out, err = ctl("--json", "cancel-temp")
    assert code == 3
    assert json.loads(out) == {"ok": False, "exit": 3, "code": spec.E_NO_TEMP_BASAL,
                               "name": "no temp basal running", "detail": 0,
                               "error": "cancel temp basal refused: no temp basal running"}


@pytest.mark.req("SEC-2", "LNK-4")
def test_command_without_key_is_refused_with_a_hint(ctl):
    code, _, err = ctl("suspend", key=False)
    assert "give the pairing key with --key" in one_line_error(err, code, 3)


@pytest.mark.req("THR-3", "THR-6")
@pytest.mark.parametrize("args, message", [
    (("bolus", "1.0005"), "argument amount: 1.0005 U is not a whole number of 0.001 U"),
    (("bolus", "abc"), "argument amount: not a number of units: 'abc'"),
    (("bolus", "-1"), "must not be negative"),
    (("bolus", "0"), "bolus amount must be more than 0 U"),
    (("bolus", "1", "--extended", "1"), "an extended bolus needs --minutes"),
    (("temp-basal", "--rate", "1", "--percent", "50", "--minutes", "30"),
     "not allowed with argument"),
    (("temp-basal", "--rate", "1"), "the following arguments are required: --minutes"),
    (("temp-basal", "--percent", "x", "--minutes", "30"), "not a whole number: 'x'"),
    (("settings", "set", "nope", "1"), "unknown setting 'nope'; settings: max_bolus"),
    (("settings", "set", "max_bolus", "12.0001"), "setting max_bolus is in U"),
    (("settings", "set", "max_bolus", "99"), "max_bolus must be 0.0 U .. 25.0 U"),
    (("settings", "set", "dia", "2.5"), "setting dia takes a whole number of min"),
    (("basal", "set", "0", "x", "06:15=1"), "basal segments start on the hour or half hour"),
    (("basal", "set", "0", "x", "06:00=1"), "the first segment must start at 00:00"),
    (("basal", "set", "0", "x", "00:00"), "use HH:MM=RATE"),
    (("basal", "set", "0", "x", "00:00=0.0001"), "not a whole number of 0.001 U"),
    (("basal", "set", "0", "toolongname", "00:00=1"), "profile name must be 1..8"),
    (("schedule", "set", "0", "1"), "schedule set needs 7 profile indexes"),
    (("time", "set", "yesterday"), "bad date-time 'yesterday': use ISO 8601"),
    (("time", "set", "2026-01-01T00:00", "--offset", "900"), "UTC offset must be -720..840"),
    (("ack", "nope"), "unknown alarm 'nope'; alarms: occlusion"),
    (("reservoir", "fill", "1.5.2"), "not a number of units"),
    (("frobnicate",), "unknown command 'frobnicate'; commands: status, bolus,"),
    (("history", "--count", "0"), "--count must be at least 1"),
])
def test_bad_input_exit_2_one_line(ctl, args, message):
    code, _, err = ctl(*args)
    assert message in one_line_error(err, code, 2)


@pytest.mark.req("SEC-1")
def test_bad_key_file_and_missing_port_exit_2(ctl, tmp_path, monkeypatch):
    bad = tmp_path / "short.key"
    bad.write_text("abcd")
    monkeypatch.delenv("PUMPCTL_PORT", raising=False)
    code = pumpctl.main(["--port", "loop://", "--key", str(bad), "status"])
    assert code == 2
    assert pumpctl.main(["status"]) == 2


@pytest.mark.req("LNK-2")
def test_unreachable_or_silent_port_exit_4(ctl):
    code, _, err = ctl("status", port="/nonexistent/ttyACM9")
    assert "cannot open /nonexistent/ttyACM9" in one_line_error(err, code, 4)
    # loop:// echoes our own frames back: never an answer, so HELLO times out
    code, _, err = ctl("--timeout", "0.05", "--retries", "1", "status", port="loop://")
    assert "no answer to HELLO" in one_line_error(err, code, 4)


@pytest.mark.req("THR-1", "THR-6", "THR-11", "HIS-1")
def test_basal_schedule_settings_time_history_totals(ctl):
    assert ctl("basal", "set", "1", "sport", "00:00=0.5", "06:00=1.25", "18:00=0.7")[0] == 0
    code, out, _ = ctl("--json", "basal", "show", "1")
    assert json.loads(out)["profiles"] == [
        {"index": 1, "name": "sport", "starts": [0, 12, 36], "rates": [500, 1250, 700]}]
    code, out, _ = ctl("basal", "show")
    assert code == 0 and "sport" in out and "06:00" in out and "1.25" in out
    assert ctl("schedule", "set", 0, 0, 0, 0, 0, 1, 1)[0] == 0
    code, out, _ = ctl("--json", "schedule")
    assert json.loads(out) == {"schedule": [0, 0, 0, 0, 0, 1, 1]}
    assert ctl("settings", "set", "max_bolus", "12.5")[0] == 0
    code, out, _ = ctl("--json", "settings")
    values = json.loads(out)
    assert values["max_bolus"]["value"] == 12500 and values["dia"]["unit"] == "min"
    code, out, _ = ctl("settings", "show", "max_bolus")
    assert re.search(r"max_bolus\s+│\s+12\.5 U", out)
    code, out, _ = ctl("time", "set", "2026-11-17T08:30", "--offset", "60")
    assert code == 0 and "time set to 2026-11-17T08:30:00 (UTC offset 60 min)" in out
    code, out, _ = ctl("--json", "time")
    t = json.loads(out)
    assert t["offset"] == 60 and t["local_time"].startswith("2026-11-17T08:30")
    code, out, _ = ctl("--json", "history", "--count", "4")
    recs = json.loads(out)
    # the change first, then the day total it closes (in the new time: THR-13)
    assert [r["kind_name"] for r in recs][-2:] == ["time_change", "day_total"]
    assert len(recs) == 4 and recs[-1]["text"].startswith("day total")
    code, out, _ = ctl("history", "--from", "1", "--count", "3")
    assert code == 0 and "boot 1" in out
    code, out, _ = ctl("--json", "totals", "--days", "2")
    days = json.loads(out)
    assert [d["date"] for d in days] == ["2026-11-17", "2026-11-16"]
    assert days[1]["valid"] and days[1]["prime"] == 600


@pytest.mark.req("ALM-1", "RES-1", "LNK-4")
def test_alarms_ack_reservoir_monitor_link_stats(ctl):
    code, out, _ = ctl("alarms")
    assert code == 0 and out == "no active alarms\n"
    assert ctl("--json", "alarms")[1] == "[]\n"
    code, _, err = ctl("ack", "occlusion")
    assert "unknown or inactive alarm (occlusion)" in one_line_error(err, code, 3)
    code, _, err = ctl("reservoir", "rewind")
    assert "delivery is not suspended" in one_line_error(err, code, 3)
    code, out, _ = ctl("--json", "monitor", "--seconds", "0.2")
    assert code == 0
    code, out, _ = ctl("--json", "link-stats")
    stats = json.loads(out)
    assert stats["frames_in"] > 0 and stats["bad_crc"] == 0


@pytest.mark.req("LNK-2")
def test_suspend_resume_temp_basal_and_monitor_events(ctl, peer):
    assert ctl("temp-basal", "--percent", "150", "--minutes", "30")[0] == 0
    code, out, _ = ctl("--json", "status")
    st = json.loads(out)
    assert (st["temp_kind"], st["temp_value"], st["basal_rate"]) == (spec.TEMP_PERCENT, 150,
                                                                     st["profile_rate"] * 3 // 2)
    assert ctl("suspend")[1] == "suspend: done\n"
    code, out, _ = ctl("--json", "status")
    assert json.loads(out)["temp_kind"] == 0  # suspend ends the temp basal
    assert ctl("resume")[0] == 0
    code, out, err = ctl("cancel-temp")
    assert code == 3


# ====================================================================== part 2: unix port
@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    from host_tools.launch import launch

    emu = launch(tmp_path_factory.mktemp("emu"))
    key = C.load_key(emu.key_path)
    with C.connect(emu.port, key=key) as pump:  # get it ready to deliver
        pump.set_profile(0, "day", [0, 12], [1000, 1200])
        pump.set_time(C.pump_seconds(__import__("datetime").datetime(2026, 11, 16, 8)), 60)
        pump.rewind()
        pump.fill(C.units_to_mu("200"))
        pump.prime(spec.PRIME_TUBING, C.units_to_mu("1"))
        pump.prime(spec.PRIME_CANNULA, C.units_to_mu("0.1"))
        pump.resume()
        pump.set_setting("bolus_speed", 3000)  # the fastest allowed: 1.5 U in 30 s
    yield emu
    emu.close()


def pumpctl_process(emu, *args, env=None):
    cmd = [sys.executable, "-m", "host_tools.pumpctl", "--port", emu.port,
           "--key", str(emu.key_path), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=REPO,
                          env={**os.environ, "COLUMNS": "100", **(env or {})})
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


@pytest.mark.req("LNK-1", "LNK-2", "HW-3")
def test_e2e_status_table_and_json(emulator):
    proc = pumpctl_process(emulator, "status")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Delivery\s+│ delivering", proc.stdout)
    assert re.search(r"Pump\s+│ unix board, firmware 1, pulse 0\.05 U", proc.stdout)
    proc = pumpctl_process(emulator, "--json", "status")
    st = json.loads(proc.stdout)
    assert st["delivering"] and st["pump"]["board"] == spec.BOARD_UNIX
    assert st["time_set"] == 1 and st["offset"] == 60 and st["reservoir"] <= 198900


@pytest.mark.req("THR-3", "LNK-2", "LNK-3", "HW-3")
def test_e2e_bolus_1_5_with_progress_to_completion(emulator):
    # TTY_INTERACTIVE makes rich draw the live bar although stderr is a pipe
    proc = pumpctl_process(emulator, "bolus", "1.5",
                           env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"bolus #\d+ completed: 1\.5 of 1\.5 U delivered\n", proc.stdout)
    shown = set(re.findall(r"(\d+\.\d+) of 1\.5 U", proc.stderr))
    assert {"0.0", "0.5", "1.0", "1.5"} <= shown  # the bar moved pulse by pulse
    proc = pumpctl_process(emulator, "--json", "history", "--count", "2")
    recs = json.loads(proc.stdout)
    assert [r["kind_name"] for r in recs] == ["bolus_start", "bolus_end"]
    assert (recs[1]["arg"], recs[1]["v2"], recs[1]["v3"]) == (spec.BOLUS_COMPLETED, 1500, 1500)


@pytest.mark.req("LNK-4", "THR-6", "HW-3")
def test_e2e_refusal_exit_3_and_bad_input_exit_2(emulator):
    proc = pumpctl_process(emulator, "bolus", "30")
    assert proc.returncode == 3
    assert proc.stderr == ("pumpctl: error: bolus refused: over limit "
                           "(max_bolus 10 U per bolus)\n")
    proc = pumpctl_process(emulator, "--json", "bolus", "30")
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["code"] == spec.E_OVER_LIMIT
    proc = pumpctl_process(emulator, "bolus", "1.0005")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not a whole number of 0.001 U" in proc.stderr
    proc = pumpctl_process(emulator, "settings", "set", "frobnication", "3")
    assert proc.returncode == 2 and "unknown setting 'frobnication'" in proc.stderr


@pytest.mark.req("LNK-2")
def test_console_script_entry_point():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["pumpctl"] == "host_tools.pumpctl:main"
    for dep in ("pyserial", "construct", "cobs", "rich"):
        assert any(d.startswith(dep) for d in project["dependencies"])


@pytest.mark.req("THR-3", "LNK-2", "HW-3")
def test_e2e_link_drop_mid_bolus_says_which_bolus_and_how_to_find_out(tmp_path):
    """The emulator dies (a power cut, its pty gone) while pumpctl follows a bolus."""
    from host_tools.launch import launch

    emu = launch(tmp_path / "emu", console=False)
    try:
        with C.connect(emu.port, key=C.load_key(emu.key_path)) as pump:
            pump.set_profile(0, "day", [0], [1000])
            pump.set_time(C.pump_seconds(__import__("datetime").datetime(2026, 11, 16, 8)), 0)
            pump.rewind()
            pump.fill(C.units_to_mu("200"))
            pump.prime(spec.PRIME_TUBING, C.units_to_mu("1"))
            pump.resume()
        cmd = [sys.executable, "-m", "host_tools.pumpctl", "--port", emu.port, "--key",
               str(emu.key_path), "--json", "bolus", "5"]  # 200 s at 1.5 U/min
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=REPO)
        time.sleep(6)  # the bolus runs, pumpctl follows it
        emu.close()
        out, err = proc.communicate(timeout=60)
    finally:
        emu.close()
    assert proc.returncode == 4, err
    assert "Traceback" not in out + err
    line = err.strip().splitlines()[-1]
    data = json.loads(out.strip().splitlines()[-1])
    assert data["bolus_id"] == 1 and data["requested"] == 5000
    assert 0 < data["delivered"] < 5000
    delivered = C.mu_to_units(data["delivered"])
    assert line.startswith(
        f"pumpctl: error: link lost while bolus #1 was running: {delivered} of 5.0 U "
        "delivered when last seen. The pump goes on by itself: once it answers again, "
        "`pumpctl status` shows the bolus if it still runs and `pumpctl history` how it "
        "ended (bolus_end #1); do not repeat it before. (cause: ")


@pytest.mark.req("LNK-2")
def test_a_second_client_on_a_port_is_told_port_busy(capsys):
    """`pumpctl monitor` in one terminal holds the port; a command in another is refused
    with one line, not a raw pyserial error or a lost answer."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    holder = C.open_port(path)  # what `pumpctl monitor` holds
    try:
        code = pumpctl.main(["--port", path, "--timeout", "0.2", "--retries", "0", "status"])
        out, err = capsys.readouterr()
        assert one_line_error(err, code, 4) == (
            f"pumpctl: error: port busy: another pumpctl (monitor?) or pump client holds "
            f"{path}; stop it, or give this command in its place")
    finally:
        holder.close()
    again = C.open_port(path)  # free again once the holder closed it
    again.close()
    os.close(master)
    os.close(slave)


# ====================================================================== a real tool
@pytest.mark.req("LNK-1")
def test_version_names_package_protocol_and_schema(capsys):
    with pytest.raises(SystemExit) as done:
        pumpctl.build_parser().parse_args(["--version"])
    assert done.value.code == 0
    from importlib import metadata

    assert capsys.readouterr().out == (
        f"pumpctl {metadata.version('micropump')} (micropump), protocol "
        f"{spec.PROTOCOL_VERSION}, schema {spec.schema_hash():#010x}\n")
    assert pumpctl.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pumpctl ")


@pytest.mark.req("HW-2")
@pytest.mark.parametrize(("argv", "message"), [
    (["stauts"], "unknown command 'stauts': did you mean 'status' or 'link-stats'?"),
    (["resrvoir", "fill", "3"], "unknown command 'resrvoir': did you mean 'reservoir'?"),
    (["reservoir", "fil", "3"], "unknown action 'fil': did you mean 'fill'?"),
    (["emu"], "unknown command 'emu': did you mean 'emulate'?"),
    (["xyz"], "unknown command 'xyz'; commands: status, bolus, cancel-bolus,"),
])
def test_mistyped_commands_get_a_suggestion(argv, message, capsys):
    assert pumpctl.main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("pumpctl: error: " + message) and len(err.splitlines()) == 1


def complete(line: str, tmp_path) -> list[str]:
    """What the shell gets for `line` + TAB (argcomplete's protocol, as its scripts call)."""
    answer = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
    proc = subprocess.run([sys.executable, "-m", "host_tools.pumpctl"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return sorted(answer.read_text().split("\n"))


@pytest.mark.req("HW-2")
def test_shell_completion_scripts_and_answers(tmp_path, capsys):
    for shell, marker in (("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")):
        assert pumpctl.main(["completion", shell]) == 0
        script = capsys.readouterr().out
        assert marker in script and "pumpctl" in script, shell
    assert complete("pumpctl res", tmp_path) == ["reservoir", "resume"]
    actions = [w for w in complete("pumpctl reservoir ", tmp_path) if not w.startswith("-")]
    assert actions == ["fill", "prime", "rewind"]
    assert "--minutes" in complete("pumpctl bolus 1 --", tmp_path)
