"""Due-edition math: crontab in a subscriber's zone, DST, day-of-week mapping (tables)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.scheduler.cron import due_edition, latest_fire, next_fires, validate_cron


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


GRACE = timedelta(hours=6)


@pytest.mark.parametrize("cron,tz,now,expected", [
    # plain daily, UTC and fixed-offset zones
    ("0 7 * * *", "UTC", utc(2024, 6, 1, 7, 0), utc(2024, 6, 1, 7, 0)),
    ("0 7 * * *", "UTC", utc(2024, 6, 1, 6, 59), utc(2024, 5, 31, 7, 0)),
    ("0 7 * * *", "Asia/Shanghai", utc(2024, 6, 1, 0, 0), utc(2024, 5, 31, 23, 0)),
    ("0 7 * * *", "Asia/Shanghai", utc(2024, 5, 31, 22, 59), utc(2024, 5, 30, 23, 0)),
    # America/New_York spring forward (2024-03-10, 02:00 → 03:00): 02:30 does not exist;
    # it fires once, at 03:30 EDT (07:30Z), and the next day at 02:30 EDT (06:30Z)
    ("30 2 * * *", "America/New_York", utc(2024, 3, 10, 12), utc(2024, 3, 10, 7, 30)),
    ("30 2 * * *", "America/New_York", utc(2024, 3, 11, 12), utc(2024, 3, 11, 6, 30)),
    ("30 2 * * *", "America/New_York", utc(2024, 3, 10, 7, 0), utc(2024, 3, 9, 7, 30)),
    # fall back (2024-11-03, 02:00 EDT → 01:00 EST): 01:30 happens twice; fire the first only
    ("30 1 * * *", "America/New_York", utc(2024, 11, 3, 5, 45), utc(2024, 11, 3, 5, 30)),
    ("30 1 * * *", "America/New_York", utc(2024, 11, 3, 7, 0), utc(2024, 11, 3, 5, 30)),
    ("30 1 * * *", "America/New_York", utc(2024, 11, 4, 7, 0), utc(2024, 11, 4, 6, 30)),
    # Europe/Berlin: spring 2024-03-31 02:00 → 03:00, autumn 2024-10-27 03:00 → 02:00
    ("30 2 * * *", "Europe/Berlin", utc(2024, 3, 31, 12), utc(2024, 3, 31, 1, 30)),
    ("30 2 * * *", "Europe/Berlin", utc(2024, 10, 27, 12), utc(2024, 10, 27, 0, 30)),
    ("0 7 * * *", "Europe/Berlin", utc(2024, 10, 27, 12), utc(2024, 10, 27, 6, 0)),
    ("0 7 * * *", "Europe/Berlin", utc(2024, 10, 26, 12), utc(2024, 10, 26, 5, 0)),
    # leap day only
    ("0 0 29 2 *", "UTC", utc(2025, 6, 1), utc(2024, 2, 29)),
])
def test_latest_fire(cron: str, tz: str, now: datetime, expected: datetime) -> None:
    got = latest_fire(cron, tz, now)
    assert got == expected
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("cron,now,weekday", [
    # 2024-06-02 is a Sunday. Standard crontab: 0 and 7 are Sunday, 1 Monday, 6 Saturday.
    ("0 9 * * 0", utc(2024, 6, 5, 12), "Sun"),
    ("0 9 * * 7", utc(2024, 6, 5, 12), "Sun"),
    ("0 9 * * 1", utc(2024, 6, 5, 12), "Mon"),
    ("0 9 * * 6", utc(2024, 6, 5, 12), "Sat"),
    ("0 9 * * sun", utc(2024, 6, 5, 12), "Sun"),
    ("0 9 * * MON", utc(2024, 6, 5, 12), "Mon"),
    ("0 9 * * 1-5", utc(2024, 6, 2, 12), "Fri"),   # Sunday now → last weekday was Friday
    ("0 9 * * 1-5", utc(2024, 6, 3, 12), "Mon"),
    ("0 9 * * 5-7", utc(2024, 6, 4, 12), "Sun"),   # Fri-Sun
    ("0 9 * * sat,sun", utc(2024, 6, 6, 12), "Sun"),
])
def test_day_of_week_is_standard_crontab(cron: str, now: datetime, weekday: str) -> None:
    assert latest_fire(cron, "UTC", now).strftime("%a") == weekday


def test_weekdays_never_fire_on_weekends() -> None:
    fires = next_fires("0 9 * * 1-5", "UTC", utc(2024, 6, 1), 10)
    assert [f.strftime("%a") for f in fires] == ["Mon", "Tue", "Wed", "Thu", "Fri"] * 2


def test_day_of_month_or_day_of_week() -> None:
    # cron fires when either restricted field matches: the 13th, and every Friday
    fires = next_fires("0 9 13 * 5", "UTC", utc(2024, 1, 1), 4)
    assert [f.day for f in fires] == [5, 12, 13, 19]


@pytest.mark.parametrize("cron,tz,now,expected", [
    ("0 7 * * *", "UTC", utc(2024, 6, 1, 7, 1), ("2024-06-01", utc(2024, 6, 1, 7))),
    ("0 7 * * *", "UTC", utc(2024, 6, 1, 13, 0), ("2024-06-01", utc(2024, 6, 1, 7))),
    ("0 7 * * *", "UTC", utc(2024, 6, 1, 13, 1), None),          # past the 6 h grace
    ("0 7 * * *", "UTC", utc(2024, 6, 1, 6, 0), None),           # yesterday's is 23 h old
    # the edition is the subscriber-local date, not the UTC date
    ("0 7 * * *", "Asia/Shanghai", utc(2024, 5, 31, 23, 30), ("2024-06-01", utc(2024, 5, 31, 23))),
    ("0 7 * * *", "America/Los_Angeles", utc(2024, 6, 1, 14, 30), ("2024-06-01", utc(2024, 6, 1, 14))),
    ("0 23 * * *", "America/New_York", utc(2024, 6, 2, 3, 30), ("2024-06-01", utc(2024, 6, 2, 3))),
    # spring forward: that day's edition exists (at 03:30 EDT)
    ("30 2 * * *", "America/New_York", utc(2024, 3, 10, 8), ("2024-03-10", utc(2024, 3, 10, 7, 30))),
])
def test_due_edition(cron: str, tz: str, now: datetime, expected: tuple | None) -> None:
    assert due_edition(cron, tz, now, GRACE) == expected


def _editions_over(cron: str, tz: str, start: datetime, hours: int) -> list[str]:
    """Walk minute by minute like the daemon and collect each distinct due edition."""
    seen: list[str] = []
    for minute in range(hours * 60):
        due = due_edition(cron, tz, start + timedelta(minutes=minute), GRACE)
        if due and due[0] not in seen:
            seen.append(due[0])
    return seen


@pytest.mark.parametrize("cron,tz,start,editions", [
    ("30 2 * * *", "America/New_York", utc(2024, 3, 9, 14), ["2024-03-10"]),
    ("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), ["2024-11-03"]),
    ("30 2 * * *", "Europe/Berlin", utc(2024, 3, 30, 12), ["2024-03-31"]),
    ("30 2 * * *", "Europe/Berlin", utc(2024, 10, 26, 12), ["2024-10-27"]),
])
def test_dst_day_has_exactly_one_edition(cron: str, tz: str, start: datetime, editions: list[str]) -> None:
    assert _editions_over(cron, tz, start, 20) == editions


def test_fall_back_fires_once_in_next_fires() -> None:
    fires = next_fires("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), 3)
    assert fires == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30), utc(2024, 11, 5, 6, 30)]


def test_every_quarter_hour_keeps_both_repeated_hours() -> None:
    # a wildcard hour is not a "fixed time": the repeated hour runs too, as in cron
    fires = next_fires("*/30 * * * *", "America/New_York", utc(2024, 11, 3, 4, 59), 5)
    assert fires == [utc(2024, 11, 3, 5), utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 6),
                     utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 7)]


def test_next_fires_strictly_after_now() -> None:
    assert next_fires("0 7 * * *", "UTC", utc(2024, 6, 1, 7), 1) == [utc(2024, 6, 2, 7)]
    almost = utc(2024, 6, 1, 6, 59, 59) + timedelta(microseconds=500_000)
    assert next_fires("0 7 * * *", "UTC", almost, 1) == [utc(2024, 6, 1, 7)]


def test_macros() -> None:
    assert latest_fire("@daily", "UTC", utc(2024, 6, 1, 12)) == utc(2024, 6, 1)
    assert latest_fire("@hourly", "UTC", utc(2024, 6, 1, 12, 30)) == utc(2024, 6, 1, 12)


@pytest.mark.parametrize("cron,fragment", [
    ("* * * *", "has 4 fields"),
    ("0 7 * * * *", "has 6 fields"),
    ("60 * * * *", "outside 0-59"),
    ("0 24 * * *", "outside 0-23"),
    ("0 0 0 * *", "outside 1-31"),
    ("0 0 * 13 *", "outside 1-12"),
    ("0 0 * * 8", "outside 0-7"),
    ("0 0 31 2 *", "never fires"),
    ("x 0 * * *", "not a number"),
    ("0 0 * * mon-", "not a number"),
    ("5-1 * * * *", "runs backwards"),
    ("*/0 * * * *", "bad step"),
    ("1,,2 * * * *", "empty list item"),
])
def test_validate_cron_rejects(cron: str, fragment: str) -> None:
    problem = validate_cron(cron)
    assert problem is not None and fragment in problem


def test_unknown_zone_and_naive_now() -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        latest_fire("0 7 * * *", "Mars/Olympus", utc(2024, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        latest_fire("0 7 * * *", "UTC", datetime(2024, 1, 1))


@pytest.mark.parametrize("cron,start,weekdays", [
    ("0 9 * * 1-5", utc(2024, 6, 1), ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
    ("0 9 * * 0", utc(2024, 6, 1), ["Sun"] * 6),
    # 6, 13 (both), 20, 27 Sep, 4, 11 Oct are Fridays; 13 Oct is a Sunday
    ("0 9 13 * 5", utc(2024, 9, 1), ["Fri"] * 6 + ["Sun"]),
])
def test_cron_trigger_for_the_scheduler_matches_crontab(cron: str, start: datetime, weekdays: list[str]) -> None:
    from digest.scheduler.cron import cron_trigger

    trig, prev, got = cron_trigger(cron, "UTC"), None, []
    now = start
    for _ in weekdays:
        prev = trig.get_next_fire_time(prev, now)
        got.append(prev.strftime("%a"))
        now = prev + timedelta(seconds=1)
    assert got == weekdays
    assert [f.strftime("%a") for f in next_fires(cron, "UTC", start, len(weekdays))] == weekdays
