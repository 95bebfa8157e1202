"""An emulator farm on labgrid (issue 18): pumps shared between test runs, on loopback.

    python -m host_tools.farm up [--places 2] [--seconds 600] [--dir build/farm]
    python -m host_tools.farm run [--wait-seconds 600] -- hil_tests/test_suspend.py -q
    make farm FARM_PLACES=2 FARM_SECONDS=600

`up` starts, all on 127.0.0.1: a labgrid coordinator (gRPC, --port, default 20408); N
emulators (host_tools/launch.py, lockstep, each with its own state and pairing key); one
ser2net (Debian's) that puts each emulator's pty on a TCP port; and a labgrid exporter that
publishes, per pump, a group `pump-N` with the NetworkSerialPort and the MicropumpKey
(hil_tests/labgrid_pump.py). The coordinator starts with the places `pump-1`.. `pump-N`
already made (places.yaml), tagged board=emulator. It prints the places, then watches:
an emulator that dies is reported at once. Everything stops after --seconds (or Ctrl-C,
SIGTERM), whatever happens.

`run` is one test session on the farm: reserve a place tagged board=emulator (labgrid's
scheduler; while every place is taken it says so and waits, at most --wait-seconds),
acquire it, run `pytest --lg-env hil_tests/farm-env.yaml ARGS` on it, release it. A place
whose pump stopped answering during the run is reported, taken out of the rotation (tag
board removed, comment set) and released.

Start-up failures end with one line: no coordinator at the address, a place name that
does not exist, a busy port, ser2net or labgrid missing.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

DEFAULT_PORT = 20408
HOST = "127.0.0.1"
EXPORTER = "farm"
TAG = "board=emulator"
ROOT = Path(__file__).resolve().parent.parent
ENV_YAML = ROOT / "hil_tests" / "farm-env.yaml"
BIN = Path(sys.executable).parent


class FarmError(Exception):
    """A start-up failure: one line for the user."""


def say(text: str) -> None:
    print(f"farm: {text}", flush=True)


def tool(name: str) -> str:
    """A labgrid command of this Python's environment (or of PATH)."""
    exe = BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise FarmError(f"{name} not found: install labgrid (pip install -e '.[farm]')")
    return found


def ser2net_binary() -> str:
    found = shutil.which("ser2net") or ("/usr/sbin/ser2net"
                                        if os.path.exists("/usr/sbin/ser2net") else None)
    if not found:
        raise FarmError("ser2net not found: install Debian's ser2net (apt-get install ser2net)")
    return found


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1 now (the kernel's choice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_listening(port: int, seconds: float, proc: subprocess.Popen, what: str,
                   log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FarmError(f"{what} exited with status {proc.returncode}: "
                            f"{last_line(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.2)
    raise FarmError(f"{what} not listening on {HOST}:{port} after {seconds:.0f} s")


def last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


class Farm:
    """The processes of `farm up`, stopped in reverse order by close()."""

    def __init__(self, places: int, directory: Path, port: int):
        self.n = places
        self.dir = directory
        self.port = port
        self.address = f"{HOST}:{port}"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.emulators: dict[str, subprocess.Popen] = {}
        self.reported: set[str] = set()

    def _spawn(self, what: str, cmd: list[str], log: Path, **kw) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, **kw)
        self.procs.append((what, proc))
        return proc

    def start(self) -> None:
        if port_busy(self.port):
            raise FarmError(f"port {self.port} on {HOST} is busy (another farm or coordinator?)"
                            ": give --port")
        ser2net = ser2net_binary()
        coordinator, exporter = tool("labgrid-coordinator"), tool("labgrid-exporter")
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        names = [f"pump-{i}" for i in range(1, self.n + 1)]

        # the emulators, each behind its pty
        ptys = {}
        for i, name in enumerate(names, 1):
            state = self.dir / name
            with open(self.dir / f"{name}.log", "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "host_tools.launch", "--state", str(state),
                     "--lockstep", "--no-console", "--seed", str(i)],
                    stdout=subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True)
            self.procs.append((f"emulator {name}", proc))
            self.emulators[name] = proc
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline().decode().strip() if ready else ""
            if not line.startswith("/dev/"):
                raise FarmError(f"emulator {name} did not start: "
                                f"{last_line(self.dir / f'{name}.log')}")
            ptys[name] = line

        # ser2net: each pty on a TCP port of 127.0.0.1 (raw bytes, one user at a time)
        tcp = dict(zip(names, free_ports(self.n), strict=True))
        conf = "".join(
            f"connection: &{name.replace('-', '')}\n"
            f"  accepter: tcp,{HOST},{tcp[name]}\n"
            f"  connector: serialdev,{ptys[name]},115200n81,local\n"
            f"  options:\n    kickolduser: true\n"
            for name in names)
        (self.dir / "ser2net.yaml").write_text(conf)
        s2n = self._spawn("ser2net", [ser2net, "-n", "-u", "-P", str(self.dir / "ser2net.pid"),
                                      "-c", str(self.dir / "ser2net.yaml")],
                          self.dir / "ser2net.log")
        for name in names:
            wait_listening(tcp[name], 10, s2n, "ser2net", self.dir / "ser2net.log")

        # the places, made before the coordinator loads them
        places = {name: {"matches": [{"exporter": EXPORTER, "group": name, "cls": "*"}],
                         "tags": {"board": "emulator"},
                         "comment": f"emulator, state {self.dir / name}"}
                  for name in names}
        (self.dir / "places.yaml").write_text(yaml.safe_dump(places))
        coord = self._spawn("coordinator", [coordinator, "-l", self.address],
                            self.dir / "coordinator.log", cwd=self.dir)
        wait_listening(self.port, 30, coord, "labgrid-coordinator",
                       self.dir / "coordinator.log")

        # the exporter: per pump its NetworkSerialPort and its key
        groups = {name: {"location": f"emulator on {HOST}",
                         "NetworkSerialPort": {"host": HOST, "port": tcp[name],
                                               "speed": 115200, "protocol": "raw"},
                         "MicropumpKey": {"path": str((self.dir / name / "key").resolve())}}
                  for name in names}
        (self.dir / "exporter.yaml").write_text(yaml.safe_dump(groups))
        exp_log = self.dir / "exporter.log"
        exp = self._spawn("exporter", [exporter, "-c", self.address, "--hostname", HOST,
                                       "-n", EXPORTER, str(self.dir / "exporter.yaml")], exp_log)
        deadline = time.monotonic() + 30
        while "Exporter ready" not in exp_log.read_text(errors="replace"):
            if exp.poll() is not None or time.monotonic() > deadline:
                raise FarmError(f"labgrid-exporter did not come up: {last_line(exp_log)}")
            time.sleep(0.2)
        (self.dir / "farm.json").write_text(json.dumps({
            "coordinator": self.address, "pid": os.getpid(),
            "places": {name: {"pty": ptys[name], "tcp": tcp[name],
                              "emulator_pid": self.emulators[name].pid} for name in names},
        }, indent=1))
        self.table(ptys, tcp)

    def table(self, ptys: dict, tcp: dict) -> None:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"micropump farm: coordinator {self.address}")
        for col in ("place", "emulator pty", "ser2net", "key"):
            t.add_column(col)
        for name in ptys:
            t.add_row(name, ptys[name], f"{HOST}:{tcp[name]}", str(self.dir / name / "key"))
        Console().print(t)

    def watch(self, seconds: float) -> None:
        """Until `seconds` have passed: report an emulator or service that exits."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for what, proc in self.procs:
                if what not in self.reported and proc.poll() is not None:
                    self.reported.add(what)
                    say(f"{what} exited (status {proc.returncode})"
                        + (": its place stays until a run finds it dead"
                           if what.startswith("emulator") else ""))
            time.sleep(0.5)

    def close(self) -> None:
        for _what, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for what, proc in reversed(self.procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                say(f"{what} still running 5 s after SIGTERM: killed")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_up(args) -> int:
    farm = Farm(args.places, Path(args.dir), args.port)

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        farm.start()
        say(f"up: {args.places} places on {farm.address}; stops in {args.seconds:.0f} s "
            "(Ctrl-C stops it now)")
        farm.watch(args.seconds)
        say("time is up: stopping")
    except FarmError as exc:
        say(str(exc))
        return 1
    except KeyboardInterrupt:
        say("stopping")
    finally:
        farm.close()
    say("stopped")
    return 0


# ---------------------------------------------------------------------------------- run
def client(address: str, *argv: str, token: str | None = None, timeout: float = 30,
           check: bool = True) -> subprocess.CompletedProcess:
    """labgrid-client against the farm's coordinator; FarmError with its last line."""
    env = dict(os.environ, LG_COORDINATOR=address)
    if token:
        env["LG_TOKEN"] = token
    try:
        res = subprocess.run([tool("labgrid-client"), "-x", address, *argv], env=env,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FarmError(f"labgrid-client {' '.join(argv)}: no answer from the coordinator "
                        f"at {address} within {timeout:.0f} s") from None
    if check and res.returncode != 0:
        raise FarmError(client_error(address, res))
    return res


def client_error(address: str, res: subprocess.CompletedProcess) -> str:
    text = (res.stderr or res.stdout).strip().splitlines()
    last = text[-1] if text else f"status {res.returncode}"
    if "UNAVAILABLE" in last or "failed to connect" in last.lower() or "refused" in last:
        return f"no labgrid coordinator at {address} (start one: make farm)"
    for prefix in ("labgrid-client: ", "error: ", "Error: "):
        last = last.removeprefix(prefix)
    return last


def coordinator_up(address: str) -> None:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        s.settimeout(2)
        if s.connect_ex((host, int(port))) != 0:
            raise FarmError(f"no labgrid coordinator at {address} (start one: make farm)")


def place_owners(address: str) -> str:
    """'pump-1 (user@host), pump-2 (...)': who holds the farm's places, for the waiting line."""
    res = client(address, "who", check=False, timeout=15)
    # columns: User Host Place Changed
    rows = [ln.split() for ln in res.stdout.splitlines()[1:] if ln.strip()]
    return ", ".join(f"{r[2]} ({r[0]}@{r[1]})" for r in rows if len(r) >= 3) or "?"


def serial_port_of(address: str, place: str) -> tuple[str, int] | None:
    """(host, port) of the NetworkSerialPort of `place`, as the coordinator shows it."""
    import ast

    text = client(address, "-p", place, "show", check=False, timeout=15).stdout
    _, found, rest = text.partition("Matching resource 'NetworkSerialPort'")
    if not found:
        return None
    body = rest.partition("\n")[2].split("Matching resource")[0]
    try:
        params = ast.literal_eval(body.strip())["params"]
        return params["host"], int(params["port"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        return None


def pump_answers(address: str, place: str) -> str | None:
    """Why the pump of `place` does not answer HELLO any more (one line), or None."""
    from hil_tests.bringup import check_target

    where = serial_port_of(address, place)
    if where is None:
        return "its serial port is gone from the coordinator"
    return check_target(f"socket://{where[0]}:{where[1]}", None)


def last_line_of(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "nothing"


def cmd_run(args) -> int:
    address = args.coordinator
    pytest_args = list(args.pytest_args)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    token = place = None
    try:
        coordinator_up(address)
        if args.place:
            client(address, "-p", args.place, "show", timeout=20)  # exists?
            filters = [f"name={args.place}"]
        else:
            filters = [TAG]
        res = client(address, "reserve", "--shell", *filters, timeout=20)
        token = res.stdout.strip().rpartition("=")[2]
        waiter = subprocess.Popen([tool("labgrid-client"), "-x", address, "wait", token],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            waiter.wait(5)  # labgrid-client itself takes seconds to start on a loaded machine
        except subprocess.TimeoutExpired:
            owners = place_owners(address)
            if waiter.poll() is None:  # still not allocated: say so once
                say(f"waiting for a free place ({' '.join(filters)}): all taken: {owners}; "
                    f"waiting up to {args.wait_seconds:.0f} s")
            started = time.monotonic()
            try:
                waiter.wait(args.wait_seconds)
            except subprocess.TimeoutExpired:
                waiter.kill()
                waiter.wait()
                raise FarmError(f"no place free within {args.wait_seconds:.0f} s") from None
            if time.monotonic() - started > 1:
                say(f"a place is free after {time.monotonic() - started:.0f} s")
        if waiter.returncode != 0:
            raise FarmError(f"reservation {token}: {last_line_of(waiter.stderr.read())}")
        res = client(address, "-p", "+", "acquire", token=token)
        place = res.stdout.strip().rpartition(" ")[2] or "?"
        say(f"acquired {place}")
    except FarmError as exc:
        say(str(exc))
        if token:
            client(address, "cancel-reservation", token, check=False)
        return 2

    env = dict(os.environ, LG_COORDINATOR=address, LG_PLACE=place, LG_TOKEN=token,
               LG_ENV=str(ENV_YAML))
    started = time.monotonic()
    # a cancelled CI job (SIGTERM, SIGHUP) still releases its place
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "--lg-env", str(ENV_YAML),
           *pytest_args]
    try:
        rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    except KeyboardInterrupt:
        rc = 130
    took = time.monotonic() - started
    try:
        if rc != 0:
            why = pump_answers(address, place)
            if why:
                say(f"place {place} is broken: its pump stopped answering during the run "
                    f"({why}); taken out of the rotation (tag board removed)")
                client(address, "-p", place, "set-comment",
                       f"broken {time.strftime('%Y-%m-%d %H:%M:%S')}: {why}", check=False)
                client(address, "-p", place, "set-tags", "board=", "broken=yes", check=False)
        client(address, "-p", place, "release", check=False)
        say(f"released {place} (pytest status {rc}, {took:.1f} s)")
    finally:
        client(address, "cancel-reservation", token, check=False)
    return rc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_tools.farm", description=__doc__
                                     .split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="coordinator, exporter, N emulators behind ser2net")
    up.add_argument("--places", type=int, default=2, help="emulators (places), default 2")
    up.add_argument("--seconds", type=float, default=600,
                    help="stop after this long (default 600)")
    up.add_argument("--dir", default=str(ROOT / "build" / "farm"),
                    help="state, logs and configs (default build/farm; emptied first)")
    up.add_argument("--port", type=int, default=DEFAULT_PORT,
                    help=f"coordinator port on {HOST} (default {DEFAULT_PORT})")
    run = sub.add_parser("run", help="reserve a place, run the HIL suite on it, release it")
    run.add_argument("--coordinator", default=os.environ.get("LG_COORDINATOR",
                                                             f"{HOST}:{DEFAULT_PORT}"),
                     help="HOST:PORT (default $LG_COORDINATOR, else 127.0.0.1:20408)")
    run.add_argument("--place", help="this place, not any free one tagged board=emulator")
    run.add_argument("--wait-seconds", type=float, default=600,
                     help="give up when no place is free within this long (default 600)")
    run.add_argument("pytest_args", nargs=argparse.REMAINDER,
                     help="after --: pytest's arguments (default: hil_tests)")
    args = parser.parse_args(argv)
    if args.cmd == "up":
        if args.places < 1 or args.seconds <= 0:
            parser.error("--places and --seconds must be positive")
        return cmd_up(args)
    if not [a for a in args.pytest_args if a != "--"]:
        args.pytest_args = ["hil_tests"]
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
