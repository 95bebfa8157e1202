"""Write protocol/cgm_golden.json: one CGM Measurement record (SNS-4) per combination of the
optional fields (status, cal/temp, warning octets, trend, quality) with and without the
E2E-CRC, as the host encoder builds it, with the field values it carries.

    .venv/bin/python -m protocol.make_cgm_golden

tests/test_cgm_record.py checks the encoder still builds these bytes and the firmware
decoder reads these values from them. Regenerate only for a deliberate format change.
"""

import json
from pathlib import Path

from firmware import cgm_record as R
from protocol import cgm_record as H

OUT = Path(__file__).with_name("cgm_golden.json")
OPTIONAL = (R.F_STATUS, R.F_CAL_TEMP, R.F_WARNING, R.F_TREND, R.F_QUALITY)


def vectors():
    out = []
    for combo in range(1 << len(OPTIONAL)):
        flags = 0
        for i, bit in enumerate(OPTIONAL):
            if combo >> i & 1:
                flags |= bit
        for e2e in (True, False):
            fields = {
                "flags": flags,
                "glucose": H.sfloat(80 + 3 * combo),
                "time_offset": 5 * combo + (0 if e2e else 1000),
                "status": R.SS_BATTERY_LOW if flags & R.F_STATUS else None,
                "cal_temp": (R.SS_CAL_RECOMMENDED >> 8) if flags & R.F_CAL_TEMP else None,
                "warning": (R.SS_RATE_DECREASE >> 16) if flags & R.F_WARNING else None,
                "trend": H.sfloat(-1.5 + combo / 10) if flags & R.F_TREND else None,
                "quality": H.sfloat(90 + combo % 10) if flags & R.F_QUALITY else None,
            }
            data = H.build_record(fields, e2e=e2e)
            out.append({"fields": fields, "e2e": e2e, "hex": data.hex()})
    return out


if __name__ == "__main__":
    OUT.write_text(json.dumps(vectors(), indent=1) + "\n")
    print(f"{OUT}: {len(vectors())} records")
