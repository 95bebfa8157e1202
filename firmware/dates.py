"""Proleptic Gregorian calendar on days since 2020-01-01, in integers only.

H. Hinnant's days_from_civil / civil_from_days ("chrono-Compatible Low-Level Date
Algorithms"). The bench console reads and prints dates with them, and the real-time clock
driver (boards/drivers.py DS3231) converts between its calendar registers and UTC seconds.
No function here allocates except date_of, which returns a tuple.
"""

UNIX_DAYS_2020 = 18262  # 1970-01-01 to 2020-01-01


def date_of(day):
    """Days since 2020-01-01 -> (year, month, day): civil_from_days."""
    z = day + UNIX_DAYS_2020 + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400
    return (y + 1 if m <= 2 else y), m, d


def day_of(y, m, d):
    """(year, month, day) -> days since 2020-01-01: days_from_civil. It does not check the
    date (2021-02-29 gives 2021-03-01): see days_in_month."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468 - UNIX_DAYS_2020


def days_in_month(y, m):
    """Days in month m (1..12) of year y."""
    if m == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if m == 4 or m == 6 or m == 9 or m == 11 else 31


def weekday(day):
    """Day of the week of a day since 2020-01-01, Monday = 0 (2020-01-01 was a Wednesday)."""
    return (day + 2) % 7
