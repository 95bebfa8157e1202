"""labgrid support for the HIL suite: a micropump target on a labgrid farm (issue 18).

    pytest --lg-env hil_tests/farm-env.yaml hil_tests     # the place given by LG_PLACE
    python -m host_tools.farm run -- hil_tests/test_suspend.py   # reserve, acquire, run

Registered with labgrid's factory when an environment YAML lists this module under
`imports:`:

`MicropumpKey`       resource: the pump's pairing key file (`path`), exported next to the
                     serial port so that every place carries the key of its own pump.
`MicropumpDriver`    binds the serial port (a NetworkSerialPort: ser2net in front of a board
                     or an emulator pty; or a local SerialPort) and the key; `check()` and
                     `open()` are hil_tests/bringup.py's steps, the same the fixtures take
                     without labgrid.
`MicropumpStrategy`  off -> booted -> paired -> ready:
                       off     the pump driver deactivated; powered off where the place has
                               a power driver (PowerProtocol: a relay, a USB hub port)
                       booted  powered on, the pump answers HELLO (within `boot_timeout`)
                       paired  the key is accepted; the session's link is open
                       ready   the known state of hil_tests/strategy.py (every test's start)
                     A board is flashed before it joins the farm (`pumpctl flash`,
                     docs/farm.md): there is no `flashed` state to pass through per run.
"""

from __future__ import annotations

import enum
import time

import attr
from labgrid.driver.common import Driver
from labgrid.factory import target_factory
from labgrid.resource.common import Resource
from labgrid.step import step
from labgrid.strategy.common import Strategy, StrategyError
from labgrid.util.proxy import proxymanager

from host_tools import client as C

from . import kit
from .bringup import Bench, bring_up, check_target, wind_down
from .strategy import PumpStrategy


@target_factory.reg_resource
@attr.s(eq=False)
class MicropumpKey(Resource):
    """The pairing key file (64 hex digits) of the pump of a place."""

    path = attr.ib(validator=attr.validators.instance_of(str))


def serial_url(port) -> str:
    """The pyserial URL of a labgrid serial port resource: rfc2217:// or socket:// for a
    NetworkSerialPort (through labgrid's proxy where the exporter asks for one), the device
    path for a local one."""
    if hasattr(port, "protocol"):
        host, tcp = proxymanager.get_host_and_port(port)
        scheme = "rfc2217" if port.protocol == "rfc2217" else "socket"
        return f"{scheme}://{host}:{tcp}"
    return port.port


@target_factory.reg_driver
@attr.s(eq=False)
class MicropumpDriver(Driver):
    """The pump behind a serial port, with its key: the bring-up of hil_tests/bringup.py."""

    bindings = {"port": {"NetworkSerialPort", "SerialPort"}, "key": {"MicropumpKey", None}}

    def __attrs_post_init__(self):
        super().__attrs_post_init__()
        self.bench: Bench | None = None

    @property
    def url(self) -> str:
        return serial_url(self.port)

    @property
    def key_file(self) -> str | None:
        return self.key.path if self.key is not None else None

    def on_deactivate(self):
        if self.bench is not None:
            wind_down(self.bench)
            self.bench = None

    @Driver.check_active
    @step(result=True)
    def check(self, with_key: bool = True) -> str | None:
        """Why the pump cannot be tested (one line), or None."""
        return check_target(self.url, self.key_file if with_key else None)

    @Driver.check_active
    @step()
    def open(self) -> Bench:
        """The session's link: connected, emulator or board found out (bringup.bring_up)."""
        if self.bench is None:
            key = C.load_key(self.key_file) if self.key_file else None
            b = Bench(self.url, key, place=getattr(self.target, "name", None))
            bring_up(b)
            self.bench = b
        return self.bench


class Status(enum.Enum):
    unknown = 0
    off = 1
    booted = 2
    paired = 3
    ready = 4


@target_factory.reg_driver
@attr.s(eq=False)
class MicropumpStrategy(Strategy):
    """off -> booted -> paired -> ready for a micropump target."""

    bindings = {"pump": "MicropumpDriver", "power": {"PowerProtocol", None}}

    status = attr.ib(default=Status.unknown)
    boot_timeout = attr.ib(default=10.0, validator=attr.validators.instance_of(float))

    @step(args=["status"])
    def transition(self, status, *, step):
        if not isinstance(status, Status):
            status = Status[status]
        if status == Status.unknown:
            raise StrategyError(f"can not transition to {status}")
        if status == Status.off:
            self.target.deactivate(self.pump)
            if self.power is not None:
                self.target.activate(self.power)
                self.power.off()
        elif status == Status.booted:
            if self.status.value >= Status.booted.value:
                self.status = Status.booted
                return
            if self.power is not None:
                self.transition(Status.off)
                self.power.on()
            self.target.activate(self.pump)
            deadline = time.monotonic() + self.boot_timeout
            why = self.pump.check(with_key=False)
            while why and time.monotonic() < deadline:
                time.sleep(0.5)
                why = self.pump.check(with_key=False)
            if why:
                raise StrategyError(f"{self.target.name}: not booted: {why}")
        elif status == Status.paired:
            if self.status.value < Status.booted.value:
                self.transition(Status.booted)
            if self.pump.bench is None:
                if self.pump.key is None:
                    raise StrategyError(f"{self.target.name}: the place has no MicropumpKey")
                why = self.pump.check(with_key=True)
                if why:
                    raise StrategyError(f"{self.target.name}: {why}")
                try:
                    self.pump.open()
                except C.PumpError as exc:
                    raise StrategyError(f"{self.target.name}: cannot reach the pump at "
                                        f"{self.pump.url}: {exc}") from exc
        elif status == Status.ready:
            # Every time: a test leaves the pump in any state (hil_tests/strategy.py).
            self.transition(Status.paired)
            b = self.pump.bench
            PumpStrategy(b.client, kit.Sim(b.client) if b.has_sim else None).to_ready()
        self.status = status

    @property
    def bench(self) -> Bench:
        """The session's pump (paired)."""
        self.transition(Status.paired)
        return self.pump.bench
