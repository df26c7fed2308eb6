"""Due-edition math: when a 5-field crontab fires in a time zone, and which edition is due (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

# Standard crontab day-of-week: 0 and 7 are Sunday. APScheduler's CronTrigger counts 0 as
# *Monday* (even in from_crontab), so we expand the field ourselves and hand it names.
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("day_of_week", 0, 7))
# Look-back windows for latest_fire, widening until a fire is found; 8 years covers Feb 29
# across a skipped leap year (2100).
_LOOKBACK = (timedelta(hours=1), timedelta(days=1, hours=2), timedelta(days=8),
             timedelta(days=32), timedelta(days=367), timedelta(days=366 * 8 + 2))


class CronSyntaxError(ValueError):
    """A crontab expression that cannot be scheduled; str() says what is wrong."""


def zone(tz: str) -> ZoneInfo:
    """The IANA zone `tz`; raises ValueError for an unknown name."""
    try:
        return ZoneInfo(tz)
    # A tzdata folder name ("Antarctica") is no zone: ZoneInfo raises IsADirectoryError.
    except (ZoneInfoNotFoundError, ValueError, TypeError, IsADirectoryError) as e:
        raise ValueError(f"unknown IANA time zone {tz!r}") from e


def _value(token: str, names: tuple[str, ...] | None, base: int) -> int:
    t = token.strip().lower()
    if names and t in names:
        return names.index(t) + base
    if not t.isdigit():
        raise CronSyntaxError(f"{token!r} is not a number")
    return int(t)


def _expand(field: str, lo: int, hi: int, names: tuple[str, ...] | None, base: int) -> set[int]:
    """Expand one crontab field (lists, ranges, steps, names) to the set of values."""
    out: set[int] = set()
    for part in field.split(","):
        if not part:
            raise CronSyntaxError(f"empty list item in {field!r}")
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            if not step_s.isdigit() or int(step_s) == 0:
                raise CronSyntaxError(f"bad step {step_s!r} in {field!r}")
            step = int(step_s)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            x, _, y = rng.partition("-")
            a, b = _value(x, names, base), _value(y, names, base)
        else:
            a = _value(rng, names, base)
            b = hi if step_s else a  # "5/10" means 5-max/10, as in Vixie cron
        if not (lo <= a <= hi and lo <= b <= hi):
            raise CronSyntaxError(f"{part!r} is outside {lo}-{hi}")
        if a > b:
            raise CronSyntaxError(f"range {part!r} runs backwards")
        out.update(range(a, b + 1, step))
    return out


@lru_cache(maxsize=256)
def parse_cron(cron: str) -> tuple[tuple[dict[str, str], ...], bool]:
    """Crontab → APScheduler CronTrigger field dicts (one, or two when day-of-month and
    day-of-week are both restricted: cron then fires when EITHER matches) and whether the
    hour is restricted. Raises CronSyntaxError."""
    if not isinstance(cron, str):
        raise CronSyntaxError("a cron expression must be a string")
    text = _MACROS.get(cron.strip().lower(), cron)
    parts = text.split()
    if len(parts) != 5:
        raise CronSyntaxError(f"{cron!r} has {len(parts)} fields; expected 5 "
                              "(minute hour day-of-month month day-of-week)")
    kw: dict[str, str] = {}
    for (name, lo, hi), val in zip(_FIELDS, parts, strict=True):
        names = _DOW_NAMES if name == "day_of_week" else _MONTH_NAMES if name == "month" else None
        base = 1 if name == "month" else 0
        values = _expand(val, lo, hi, names, base)
        if name == "day_of_week":
            days = sorted({v % 7 for v in values})
            kw[name] = "*" if len(days) == 7 else ",".join(_DOW_NAMES[d] for d in days)
        else:
            kw[name] = "*" if values == set(range(lo, hi + 1)) else ",".join(map(str, sorted(values)))
    # Vixie cron: a field "restricted" unless it starts with '*'; both restricted → OR.
    dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
    if not dom_star and not dow_star:
        variants = ({**kw, "day_of_week": "*"}, {**kw, "day": "*"})
    elif not dow_star:
        variants = ({**kw, "day": "*"},)
    else:
        variants = ({**kw, "day_of_week": "*"},)
    hour_restricted = not parts[1].startswith("*")
    # A day-of-month that never exists in the allowed months (Feb 30) never fires.
    if _never_fires(variants):
        raise CronSyntaxError(f"{cron!r} never fires (no such date)")
    return variants, hour_restricted


def _never_fires(variants: tuple[dict[str, str], ...]) -> bool:
    start = datetime(2000, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=366 * 8 + 2)
    for kw in variants:
        trig = CronTrigger(timezone=UTC, end_date=end, **kw)
        if trig.get_next_fire_time(None, start) is not None:
            return False
    return True


def validate_cron(cron: str) -> str | None:
    """None when `cron` is a valid 5-field crontab, else the problem as a sentence."""
    try:
        parse_cron(cron)
    except (CronSyntaxError, ValueError) as e:
        return str(e)
    return None


def cron_trigger(cron: str, tz: str = "UTC") -> BaseTrigger:
    """An APScheduler trigger firing like standard cron (dow 0 = Sunday, dom OR dow)."""
    variants, _ = parse_cron(cron)
    triggers = [CronTrigger(timezone=zone(tz), **kw) for kw in variants]
    return triggers[0] if len(triggers) == 1 else OrTrigger(triggers)


def _triggers(cron: str, tz: str, end: datetime) -> tuple[list[CronTrigger], bool]:
    variants, hour_restricted = parse_cron(cron)
    z = zone(tz)
    return [CronTrigger(timezone=z, end_date=end, **kw) for kw in variants], hour_restricted


def _repeated_wall_time(dt: datetime) -> bool:
    """True for the second occurrence of a wall time repeated by a fall-back transition."""
    first, second = dt.replace(fold=0), dt.replace(fold=1)
    if first.utcoffset() == second.utcoffset():
        return False
    # In a gap (spring forward) neither fold round-trips; in a fold both do.
    for cand in (first, second):
        if cand.astimezone(UTC).astimezone(dt.tzinfo).replace(tzinfo=None) != dt.replace(tzinfo=None):
            return False
    return dt.astimezone(UTC) == second.astimezone(UTC)


def _fires(cron: str, tz: str, start: datetime, end: datetime):
    """Yield (local fire, UTC fire) in order for start ≤ fire ≤ end."""
    triggers, hour_restricted = _triggers(cron, tz, end)
    nxt = [t.get_next_fire_time(None, start) for t in triggers]
    while True:
        live = [(n.astimezone(UTC), i) for i, n in enumerate(nxt) if n is not None]
        if not live:
            return
        at, _ = min(live)
        local = next(n for n in nxt if n is not None and n.astimezone(UTC) == at)
        after = at + timedelta(seconds=1)  # step in UTC: wall-clock arithmetic breaks on folds
        nxt = [t.get_next_fire_time(None, after) if n is not None and n.astimezone(UTC) == at else n
               for t, n in zip(triggers, nxt, strict=True)]
        # A fixed hour inside the autumn fall-back would fire twice; cron fires it once.
        if hour_restricted and _repeated_wall_time(local):
            continue
        yield local, at


def _check_now(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _latest(cron: str, tz: str, now: datetime) -> tuple[datetime, datetime] | None:
    now = _check_now(now)
    for back in _LOOKBACK:
        last = None
        for pair in _fires(cron, tz, now - back, now):
            last = pair
        if last is not None:
            return last
    return None


def latest_fire(cron: str, tz: str, now: datetime) -> datetime | None:
    """The latest time ≤ now at which `cron` fires in zone `tz`, as aware UTC (None if never)."""
    found = _latest(cron, tz, now)
    return found[1] if found else None


def due_edition(cron: str, tz: str, now: datetime, grace: timedelta) -> tuple[str, datetime] | None:
    """(edition, fire) when the latest fire is within `grace` of now, else None.

    The edition is the subscriber-local calendar date of the scheduled wall time, so a
    schedule moved by DST still names the same day and a repeat fire is the same edition.
    """
    found = _latest(cron, tz, now)
    if found is None:
        return None
    local, fire = found
    if _check_now(now) - fire > grace:
        return None
    return local.date().isoformat(), fire


def next_fires(cron: str, tz: str, now: datetime, n: int) -> list[datetime]:
    """The next `n` fire times strictly after `now`, as aware UTC."""
    now = _check_now(now)
    out: list[datetime] = []
    # Fires fall on whole seconds: the first candidate strictly after now.
    start = now.replace(microsecond=0) + timedelta(seconds=1)
    span = timedelta(days=2)
    while len(out) < n and span <= timedelta(days=366 * 8 + 2) * 2:
        out = [at for _, at in _take(_fires(cron, tz, start, start + span), n)]
        span *= 4
    return out


def _take(it, n: int) -> list:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out
