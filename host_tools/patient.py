"""Virtual patient for the emulator's sensor link: simglucose in lockstep with the pump.

The model is simglucose (https://github.com/jxx123/simglucose, MIT licence, installed with
the optional extra ``micropump[patient]``): Jinyu Xie's Python implementation of the
UVA/Padova type 1 diabetes simulator (2008 version, the FDA-accepted in-silico population:
C. Dalla Man, R. A. Rizza, C. Cobelli, "Meal simulation model of the glucose-insulin
system", IEEE Trans. Biomed. Eng. 54(10), 2007; B. P. Kovatchev et al., "In silico
preclinical trials: a proof of concept in closed-loop control of type 1 diabetes",
J. Diabetes Sci. Technol. 3(1), 2009), with its 30 virtual patients (adolescent#001..010,
adult#001..010, child#001..010), their parameters in simglucose/params/vpatient_params.csv
and their therapy (carb ratio, correction factor) in params/Quest.csv.

Coupling (boards/emulator.py documents the firmware side). The firmware runs in the
MicroPython unix port; the patient runs here, in CPython, inside the launcher
(host_tools/launch.py). Every 5 virtual minutes the emulator's sensor link writes
(virtual minute, insulin mU delivered since the last exchange) on a pipe and blocks until
the launcher answers the CGM value: `PatientModel.exchange` steps the model from its last
minute to that minute, one simglucose step (1 min) at a time, with the insulin spread
evenly over those minutes and the scenario's meals announced at their minute (eaten at
simglucose's 5 g/min), then returns the subcutaneous glucose rounded to mg/dL. The clock
the patient lives on is the emulator's virtual clock, so the same exchange works in
lockstep (CLK_ADVANCE) and in real time, and the patient never runs ahead of the pump.

The sensor is ideal (no CGM noise, no lag beyond the model's subcutaneous compartment):
the HIL scenarios stay deterministic. Insulin resistance: ``sensitivity`` scales the
model's insulin action parameters Vmx (insulin-dependent glucose utilisation) and kp3
(insulin suppression of hepatic glucose production); 1.0 is the patient as published, 0.5
an insulin-resistant version of the same patient.

Meal scenarios (`load_scenario`): JSON, either a list of {"time": ..., "grams": ...} or
{"meals": [...]}, or CSV lines `time,grams` (a header line and # comments allowed). A time
is minutes (an integer) or "H:MM" / "D+H:MM", counted from the start of the patient (the
emulator's launch; the HIL scenarios set the pump's clock so that minute 0 is 06:00).
Meals become a simglucose CustomScenario.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

REQUEST = struct.Struct("<ii")  # virtual minute, insulin mU since the last exchange
ANSWER = struct.Struct("<i")  # CGM mg/dL (0: no reading)
EPOCH_NAME = "2020-01-01T00:00"  # the scenario's start_time (any fixed instant does)


class PatientUnavailable(RuntimeError):
    """simglucose is not installed (pip install 'micropump[patient]')."""


def simglucose_available() -> bool:
    try:
        import simglucose.patient.t1dpatient  # noqa: F401
    except Exception:  # ImportError, or a broken dependency of it
        return False
    return True


def _import():
    try:
        from simglucose.patient.t1dpatient import Action, T1DPatient
        from simglucose.simulation.scenario import CustomScenario
    except Exception as exc:
        raise PatientUnavailable(
            "the virtual patient needs simglucose: pip install 'micropump[patient]' "
            f"({exc})") from None
    return Action, T1DPatient, CustomScenario


# ----------------------------------------------------------------------------- scenarios
def parse_time(text: str | int | float) -> int:
    """Minutes from the patient's start: 90, "1:30", "1+07:00" (day 1, 07:00)."""
    if isinstance(text, int | float):
        m = int(text)
    else:
        s = str(text).strip()
        day = 0
        if "+" in s:
            d, s = s.split("+", 1)
            day = int(d)
        if ":" in s:
            h, mm = s.split(":", 1)
            m = day * 1440 + int(h) * 60 + int(mm)
        else:
            m = day * 1440 + int(s)
    if m < 0:
        raise ValueError(f"meal time {text!r} is before the start")
    return m


def load_scenario(path: str | os.PathLike) -> list[tuple[int, float]]:
    """[(minute, grams)] sorted by minute; ValueError naming the file when malformed."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read scenario {p}: {exc.strerror or exc}") from None
    meals: list[tuple[int, float]] = []
    try:
        if p.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
            data = json.loads(text)
            rows = data.get("meals", []) if isinstance(data, dict) else data
            for row in rows:
                meals.append((parse_time(row["time"]), float(row["grams"])))
        else:
            for row in csv.reader(io.StringIO(text)):
                if not row or row[0].strip().startswith("#"):
                    continue
                if not (row[0].strip()[:1].isdigit()):
                    continue  # header
                if len(row) != 2:
                    raise ValueError(f"expected time,grams, got {row}")
                meals.append((parse_time(row[0]), float(row[1])))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"scenario {p}: {exc}") from None
    for m, g in meals:
        if not 0 < g <= 300:
            raise ValueError(f"scenario {p}: {g} g at minute {m}: grams must be 1..300")
    return sorted(meals)


# ----------------------------------------------------------------------------- the model
class _FastParams:
    """The patient's parameters as plain floats. simglucose's ODE right-hand side reads
    them as attributes of a pandas Series, which costs ~20x the arithmetic; the values are
    the same (the reset code reads `.iloc` and `.Name`, kept)."""

    def __init__(self, series):
        for k, v in series.items():
            setattr(self, k, v if isinstance(v, str) else float(v))
        self.iloc = series.iloc


@dataclass
class PatientConfig:
    """What the launcher needs to host a patient."""

    name: str = "adult#001"
    meals: list[tuple[int, float]] = field(default_factory=list)
    sensitivity: float = 1.0  # insulin sensitivity factor (1.0: as published)

    @classmethod
    def from_files(cls, name: str, scenario: str | os.PathLike | None = None,
                   sensitivity: float = 1.0) -> PatientConfig:
        meals = load_scenario(scenario) if scenario is not None else []
        return cls(name, meals, sensitivity)


class PatientModel:
    """One simglucose T1DPatient on the emulator's virtual minutes."""

    def __init__(self, config: PatientConfig):
        import datetime as dt

        Action, T1DPatient, CustomScenario = _import()
        self.Action = Action
        try:
            template = T1DPatient.withName(config.name)
        except Exception:
            template = None
        if template is None or not isinstance(getattr(template._params, "Name", None), str):
            raise ValueError(f"unknown virtual patient {config.name!r}: adolescent#001..010, "
                             "adult#001..010, child#001..010")
        params = _FastParams(template._params)
        self._published = (params.Vmx, params.kp3)
        self.patient = T1DPatient(params)
        self.set_sensitivity(config.sensitivity)
        self.config = config
        self.start = dt.datetime.fromisoformat(EPOCH_NAME)
        self.scenario = CustomScenario(
            start_time=self.start,
            scenario=[(dt.timedelta(minutes=m), g) for m, g in config.meals])
        self._meal_at = {m: g for m, g in config.meals}
        self.minute = 0
        self.glucose = float(self.patient.observation.Gsub)
        self.insulin_mu = 0  # all insulin received
        self.pending_mu = 0  # reported, not yet given (no time passed since)
        self.carbs_g = 0.0
        self.trace: list[tuple[int, float, int]] = []  # (minute, mg/dL, mU in that exchange)

    def set_sensitivity(self, factor: float) -> None:
        """Insulin sensitivity from now on, relative to the published patient (1.0):
        scales Vmx and kp3 (module doc). The state carries over (a patient who becomes
        insulin resistant)."""
        if not 0.05 <= factor <= 5:
            raise ValueError(f"insulin sensitivity factor {factor}: 0.05..5")
        p = self.patient._params
        p.Vmx = self._published[0] * factor
        p.kp3 = self._published[1] * factor
        self.sensitivity = factor

    @property
    def basal_u_per_h(self) -> float:
        """The steady-state basal rate the published parameters assume."""
        p = self.patient._params
        return p.u2ss * p.BW / 6000 * 60

    def _meal(self, minute: int) -> float:
        import datetime as dt

        if minute not in self._meal_at:  # CustomScenario.get_action is linear: skip it
            return 0.0
        return float(self.scenario.get_action(self.start + dt.timedelta(minutes=minute)).meal)

    def exchange(self, minute: int, insulin_mu: int) -> int:
        """Run the patient to `minute` with `insulin_mu` spread over the minutes since the
        last exchange; the CGM value (mg/dL, 1..1000) at `minute`."""
        steps = minute - self.minute
        self.insulin_mu += insulin_mu
        self.pending_mu += insulin_mu
        if steps > 0:
            rate = self.pending_mu / 1000 / steps  # U/min
            self.pending_mu = 0
            Action = self.Action
            for i in range(steps):
                carbs = self._meal(self.minute + i)
                self.carbs_g += carbs
                self.patient.step(Action(CHO=carbs, insulin=rate))
            self.minute = minute
            self.glucose = float(self.patient.observation.Gsub)
        # insulin reported without time passing (after a reboot) goes in with the next step
        mg = max(1, min(1000, round(self.glucose)))
        self.trace.append((minute, self.glucose, insulin_mu))
        return mg


class PatientLink:
    """The launcher's end of the pipes: requests in, answers out (see module doc)."""

    def __init__(self, model: PatientModel):
        self.model = model
        self.buf = b""
        self.errors: list[str] = []

    def feed(self, data: bytes) -> bytes:
        """Bytes from the emulator -> the answers to write back."""
        self.buf += data
        out = b""
        while len(self.buf) >= REQUEST.size:
            minute, mu = REQUEST.unpack_from(self.buf)
            self.buf = self.buf[REQUEST.size:]
            try:
                mg = self.model.exchange(minute, mu)
            except Exception as exc:  # the model failed: no reading, never a hang
                self.errors.append(f"minute {minute}: {exc!r}")
                mg = 0
            out += ANSWER.pack(mg)
        return out


# ----------------------------------------------------------------------------- therapy
def therapy(name: str) -> dict:
    """The published therapy of a virtual patient: carb ratio (g/U), correction factor
    (mg/dL per U) from simglucose's Quest.csv, and the steady-state basal rate (U/h)."""
    import pandas as pd

    _Action, T1DPatient, _CustomScenario = _import()
    from importlib.resources import files

    quest = pd.read_csv(str(files("simglucose") / "params" / "Quest.csv"))
    row = quest.loc[quest.Name == name]
    if row.empty:
        raise ValueError(f"unknown virtual patient {name!r}")
    p = T1DPatient.withName(name)._params
    return {"carb_ratio": float(row.CR.iloc[0]), "correction": float(row.CF.iloc[0]),
            "basal": float(p.u2ss * p.BW / 6000 * 60)}


def setup_pump(pump, name: str, utc: int, *, target=(100, 140), sbl: bool = False,
               fill_mu: int = 200000, offset: int = 0) -> dict:
    """Program a pump for a virtual patient, over the protocol: clock (`utc`, `offset`), a
    flat basal profile at the patient's steady-state rate (to 0.05 U/h), the calculator
    schedules (carb ratio, sensitivity, target), glucose alerts on, suspend before low
    (`sbl`), a filled and primed reservoir, delivery resumed. Returns therapy()."""
    from protocol import spec as S

    th = therapy(name)
    rate = max(50, round(th["basal"] * 20) * 50)  # mU/h, a multiple of 50
    pump.set_time(utc, offset)
    pump.set_profile(0, "patient", [0], [rate])
    pump.set_schedule([0] * 7)
    pump.set_calc_schedule(S.CALC_CARB_RATIO, [0], [round(th["carb_ratio"] * 10)])
    pump.set_calc_schedule(S.CALC_SENSITIVITY, [0], [round(th["correction"])])
    pump.set_calc_schedule(S.CALC_TARGET, [0], [target[0]], [target[1]])
    pump.set_setting("suspend_before_low", int(sbl))
    pump.set_setting("max_bolus", 25000)  # an adult's meal bolus can pass the 10 U default
    pump.set_setting("max_bolus_1h", 50000)
    st = pump.status()
    if st.delivering:
        pump.suspend()
    pump.rewind()
    pump.fill(fill_mu)
    pump.prime(S.PRIME_TUBING, 500)
    pump.prime(S.PRIME_CANNULA, 300)
    pump.resume()
    th["rate_mu"] = rate
    return th


class DayDriver:
    """Runs an emulator in lockstep through a meal scenario, as the person wearing the
    pump would: at each meal, ask the calculator (carbs and the latest CGM value) and
    deliver its suggestion with a separate bolus command (THR-8), then let time run.

    `elapsed_ms` is the virtual time since the launch (the patient's minute 0); set-up
    commands take none in lockstep."""

    CHUNK_MS = 3600000

    def __init__(self, pump, meals: list[tuple[int, float]], *, bolus_meals: bool = True,
                 say=None):
        self.pump = pump
        self.meals = list(meals)
        self.bolus_meals = bolus_meals
        self.elapsed_ms = 0
        self.say = say or (lambda text: None)
        self.boluses: list[tuple[int, int, int]] = []  # (minute, carbs g, mU)

    def advance(self, ms: int) -> None:
        from protocol import spec as S

        while ms > 0:
            step = min(ms, self.CHUNK_MS)
            ran = self.pump.emu_clock(S.CLK_ADVANCE, step).detail
            self.elapsed_ms += ran
            ms -= ran
            if ran <= 0:
                break

    def run_to(self, minute: int) -> None:
        """Run until virtual `minute`, giving the meal boluses on the way."""
        for m, grams in self.meals:
            if self.elapsed_ms < m * 60000 <= minute * 60000:
                self.advance(m * 60000 - self.elapsed_ms)
                self.meal(m, grams)
        self.advance(minute * 60000 - self.elapsed_ms)

    def meal(self, minute: int, grams: float) -> None:
        pump = self.pump
        st = pump.status()
        bg = st.glucose if st.glucose > 0 and st.glucose_age <= 15 else 0
        carbs = int(round(grams))
        if not self.bolus_meals:
            self.say(f"minute {minute}: meal {carbs} g, no bolus")
            return
        sug = pump.calc(carbs, bg)
        total = sug.total
        if total >= pump.info.pulse_mu:
            pump.bolus(total)
        self.boluses.append((minute, carbs, total))
        self.say(f"minute {minute}: meal {carbs} g at {bg or '?'} mg/dL -> bolus "
                 f"{total / 1000:.2f} U (food {sug.food / 1000:.2f}, correction "
                 f"{sug.correction / 1000:.2f}, IOB {sug.iob / 1000:.2f})")
