"""`digest subscribers add|list|remove|import` through the CLI, with validation and CSV."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.cli import main
from digest.pipeline.subscribing import import_csv
from digest.store import Store
from tests.support.send import make_project


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A project whose store exists but holds nothing (as after `digest init`): commands other
    than init/ingest/run refuse a missing store (tests/cli/test_ops.py)."""
    from digest.store import open_store

    open_store(make_project(tmp_path, ingest=False).store).close()
    return tmp_path / "config.toml"


def run(cfg: Path, *args: str) -> int:
    return main(["--config", str(cfg), "subscribers", *args])


def listed(cfg: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert run(cfg, "list", "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_add_list_remove(cfg: Path, capsys) -> None:
    assert run(cfg, "add", "Reader@Example.com", "--lang", "zh", "--tags", "政策,Agent",
               "--tz", "Asia/Shanghai") == 0
    assert run(cfg, "add", "en@example.com", "--lang", "en") == 0
    assert run(cfg, "add", "both@example.com") == 0
    subs = {s["email"]: s for s in listed(cfg, capsys)}
    assert subs["reader@example.com"] == {**subs["reader@example.com"], "languages": ["zh"],
                                          "tags": ["政策", "Agent"], "timezone": "Asia/Shanghai",
                                          "status": "active"}
    assert subs["both@example.com"]["languages"] == ["en", "zh"]
    assert subs["both@example.com"]["tags"] == [] and subs["both@example.com"]["timezone"] == "UTC"
    assert all("secret" not in s for s in subs.values())
    assert run(cfg, "list") == 0
    assert "3 subscriber(s)" in capsys.readouterr().out
    assert run(cfg, "remove", "REader@example.com") == 0
    assert [s["email"] for s in listed(cfg, capsys)] == ["both@example.com", "en@example.com"]  # email order


@pytest.mark.parametrize("args,needle", [
    (["add", "not-an-email"], "not a valid email"),
    (["add", "a@example.com", "--lang", "fr"], "unknown language"),
    (["add", "a@example.com", "--tz", "Mars/Olympus"], "unknown time zone"),
    (["add", "a@example.com\r\nBcc: x@y.com"], "line breaks"),
    (["remove", "nobody@example.com"], "no subscriber"),
])
def test_bad_input_is_a_user_error_with_a_hint(cfg: Path, capsys, args, needle) -> None:
    assert run(cfg, *args) == 1
    err = capsys.readouterr().err
    assert needle in err and "hint:" in err


def test_duplicate_add_is_refused(cfg: Path, capsys) -> None:
    assert run(cfg, "add", "a@example.com") == 0
    assert run(cfg, "add", "A@example.com") == 1
    assert "already exists" in capsys.readouterr().err


def test_import_reports_bad_rows_with_line_numbers_and_keeps_good_ones(
        cfg: Path, tmp_path: Path, capsys) -> None:
    csv_file = tmp_path / "subs.csv"
    csv_file.write_text(
        "email,languages,tags,timezone\n"
        'a@example.com,"en,zh","政策,Agent",Asia/Shanghai\n'
        "not-an-email,en,,UTC\n"
        "b@example.com,zh,,\n"
        "c@example.com,fr,,UTC\n"
        '"multi\nline@example.com",en,,UTC\n'
        "d@example.com,en,,Nowhere/Town\n"
        "\n"
        "e@example.com,,,\n", encoding="utf-8")
    assert run(cfg, "import", str(csv_file)) == 1  # partial: bad rows reported
    out = capsys.readouterr().out
    assert f"{csv_file}:3: email: 'not-an-email' is not a valid email address" in out
    assert f"{csv_file}:5: languages: unknown language 'fr'" in out
    assert f"{csv_file}:7:" in out  # the quoted two-line field ends on line 7
    assert f"{csv_file}:8: timezone: unknown time zone 'Nowhere/Town'" in out
    assert "3 added, 0 updated" in out and "4 bad row(s)" in out
    subs = {s["email"]: s for s in listed(cfg, capsys)}
    assert set(subs) == {"a@example.com", "b@example.com", "e@example.com"}
    assert subs["a@example.com"]["languages"] == ["en", "zh"]
    assert subs["a@example.com"]["tags"] == ["政策", "Agent"]
    assert subs["b@example.com"]["timezone"] == "UTC"
    assert subs["e@example.com"]["languages"] == ["en", "zh"]
    assert all(s["status"] == "active" for s in subs.values())


def test_import_never_resubscribes_the_unsubscribed(cfg: Path, tmp_path: Path, capsys) -> None:
    assert run(cfg, "add", "gone@example.com") == 0
    from digest.config import load_config

    store = Store(load_config(cfg).store.path)
    created = store.get_subscriber("gone@example.com").created
    store.update_subscriber("gone@example.com", status="unsubscribed")
    f = tmp_path / "s.csv"
    f.write_text("email,languages,tags,timezone\ngone@example.com,en,,UTC\n", encoding="utf-8")
    assert run(cfg, "import", str(f)) == 0
    got = Store(load_config(cfg).store.path).get_subscriber("gone@example.com")
    assert got.status == "unsubscribed" and got.languages == ["en"] and got.created == created


def test_import_needs_a_header(cfg: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "s.csv"
    f.write_text("a@example.com,en,,UTC\n", encoding="utf-8")
    assert run(cfg, "import", str(f)) == 1
    assert ":1: the header" in capsys.readouterr().err


def _big_csv(path: Path, n: int) -> None:
    rows = ["email,languages,tags,timezone"]
    zones = ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]
    for i in range(n):
        rows.append(f'user{i}@example.com,"en,zh","政策",{zones[i % 4]}')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_import_many_rows_in_one_transaction(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    _big_csv(tmp_path / "big.csv", 5000)
    store = Store(config.store.path)
    r = import_csv(store, tmp_path / "big.csv", datetime.now(UTC))
    assert (r.added, r.updated, r.kept, r.bad) == (5000, 0, 0, [])
    assert len(Store(config.store.path).list_subscribers(status="active")) == 5000


@pytest.mark.slow
def test_import_100k_rows(tmp_path: Path) -> None:
    config = make_project(tmp_path, ingest=False)
    _big_csv(tmp_path / "big.csv", 100_000)
    report = import_csv(Store(config.store.path), tmp_path / "big.csv", datetime.now(UTC))
    assert report.added == 100_000


# --- one set of rules (digest.subscribers) for the CLI, CSV import and the web -----------------


@pytest.mark.parametrize("values,want", [
    (None, []), ("", []), ("政策, Agent", ["政策", "Agent"]), (["a，b、c", "a"], ["a", "b", "c"]),
    (["  many   spaces  "], ["many spaces"]), ("x\ny", ["x", "y"]), ([f"t{i}" for i in range(30)],
                                                                 [f"t{i}" for i in range(30)]),
])
def test_tags_accepted(values, want) -> None:
    from digest.subscribers import parse_tags

    assert parse_tags(values) == want


@pytest.mark.parametrize("values,needle", [
    ("x" * 65, "longer than 64"), (["ok", "a\x01b"], "control character"),
    ([f"t{i}" for i in range(31)], "at most 30"),
])
def test_tags_refused_not_trimmed(values, needle) -> None:
    from digest.errors import DigestError
    from digest.subscribers import parse_tags

    with pytest.raises(DigestError) as e:
        parse_tags(values)
    assert needle in e.value.message and e.value.hint


@pytest.mark.parametrize("values,want", [
    (None, ["en", "zh"]), ("zh,en", ["en", "zh"]), (["zh-Hant"], ["zh"]), ("EN zh-hans", ["en", "zh"]),
])
def test_languages_accepted(values, want) -> None:
    from digest.subscribers import parse_languages

    assert parse_languages(values) == want


@pytest.mark.parametrize("values,needle", [([], "at least one"), ("fr", "unknown language 'fr'"),
                                           (["en", "<b>"], "unknown language")])
def test_languages_refused(values, needle) -> None:
    from digest.errors import DigestError
    from digest.subscribers import parse_languages

    with pytest.raises(DigestError) as e:
        parse_languages(values)
    assert needle in e.value.message


@pytest.mark.parametrize("tz,want", [(None, "UTC"), ("  ", "UTC"), (" Asia/Shanghai ", "Asia/Shanghai"),
                                     ("America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires")])
def test_timezone_accepted(tz, want) -> None:
    from digest.subscribers import check_timezone

    assert check_timezone(tz) == want


@pytest.mark.parametrize("tz", ["Mars/Olympus", "America", "../../etc/passwd", "/etc/localtime",
                                "UTC\x00", "a" * 300, "utc"])
def test_timezone_refused(tz) -> None:
    from digest.errors import DigestError
    from digest.subscribers import check_timezone

    with pytest.raises(DigestError, match="unknown time zone"):
        check_timezone(tz)


def test_cli_refuses_a_long_tag_instead_of_truncating_it(cfg: Path, capsys) -> None:
    # The CLI used to cut tags at 64 characters silently; the web refused them. Both refuse.
    assert run(cfg, "add", "a@example.com", "--tags", "x" * 65) == 1
    assert "longer than 64" in capsys.readouterr().err
    assert listed(cfg, capsys) == []


def test_cli_caps_tags_at_30_like_the_web(cfg: Path, capsys) -> None:
    tags = ",".join(f"t{i}" for i in range(31))
    assert run(cfg, "add", "a@example.com", "--tags", tags) == 1
    assert "at most 30" in capsys.readouterr().err
    assert run(cfg, "add", "a@example.com", "--tags", tags.rsplit(",", 1)[0]) == 0


def test_cli_names_a_zone_directory_as_unknown(cfg: Path, capsys) -> None:
    assert run(cfg, "add", "a@example.com", "--tz", "America") == 1
    assert "unknown time zone 'America'" in capsys.readouterr().err


def test_import_refuses_rows_the_cli_refuses(cfg: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "s.csv"
    many = ",".join(f"t{i}" for i in range(31))
    f.write_text(f'email,tags\nlong@example.com,{"y" * 65}\nmany@example.com,"{many}"\n'
                 "ok@example.com,a，b\n", encoding="utf-8")
    assert run(cfg, "import", str(f)) == 1
    out = capsys.readouterr().out
    assert f"{f}:2: tags: the tag" in out and f"{f}:3: tags: 31 tags" in out
    subs = listed(cfg, capsys)
    assert [(s["email"], s["tags"]) for s in subs] == [("ok@example.com", ["a", "b"])]


def test_state_rules() -> None:
    from datetime import timedelta

    from digest import subscribers as rules
    from digest.mail import tokens
    from digest.models import Subscriber

    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    new = rules.new_subscriber("A@Example.com", ["zh"], "x", "UTC", "pending", now)
    assert (new.email, new.status, new.confirmed) == ("a@example.com", "pending", None)
    active = Subscriber(email=new.email, status="active", created=now - timedelta(days=9))
    assert rules.subscribed(active, new) is None  # the form never changes an active reader
    gone = Subscriber(email=new.email, status="unsubscribed", created=now - timedelta(days=9))
    assert rules.subscribed(gone, new) == {"languages": ["zh"], "tags": ["x"], "timezone": "UTC",
                                           "digests": (), "status": "pending", "created": now,
                                           "suppressed": "unsubscribed"}
    expires = now + tokens.CONFIRM_LIFETIME
    assert rules.confirmed(None, expires, now, activate=True) == ("gone", None)
    assert rules.confirmed(gone, expires, now, activate=True) == ("gone", None)
    assert rules.confirmed(active, expires, now, activate=True) == ("already", None)
    assert rules.confirmed(new, expires - timedelta(seconds=1), now, activate=True)[0] == "stale"
    assert rules.confirmed(new, expires, now, activate=False) == ("ready", None)
    assert rules.confirmed(new, expires, now, activate=True) == (
        "confirmed", {"status": "active", "confirmed": now})
    assert rules.preferences_changed(gone, ["en"], [], "UTC") is None
    assert rules.unsubscribed(gone) is None and rules.unsubscribed(active) == {"status": "unsubscribed"}
    row, kept = rules.imported(gone, rules.new_subscriber("a@example.com", "en", None, None,
                                                          "active", now))
    assert kept and row.status == "unsubscribed" and row.created == gone.created


# --- a web subscribe nobody confirms never erases an unsubscribe or a complaint ------------------


def _web_resubscribe(cfg: Path, email: str, status: str, now: datetime):
    """`email` stored with `status`, then a subscribe request for it (anyone can post the
    form) at `now`: (the Subscriptions handle, the store, the pending row)."""
    from digest import subscribers as rules
    from digest.config import load_config
    from digest.pipeline.subscribing import open_subscriptions

    config = load_config(cfg)
    store = Store(config.store.path)
    store.add_subscriber(rules.new_subscriber(email, "en", None, None, "active",
                                              now.replace(year=2025)))
    store.update_subscriber(email, status=status)
    subs = open_subscriptions(config)
    pending = subs.subscribe(rules.new_subscriber(email, "zh", "ai", None, "pending", now))
    return config, subs, pending


@pytest.mark.parametrize("status", ["unsubscribed", "complained", "bounced"])
def test_unconfirmed_resubscribe_expires_back_to_the_gone_status(
        cfg: Path, tmp_path: Path, status: str) -> None:
    from datetime import timedelta

    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    config, subs, pending = _web_resubscribe(cfg, "alice@example.com", status, now)
    assert (pending.status, pending.suppressed) == ("pending", status)
    f = tmp_path / "old.csv"
    f.write_text("email,languages\nalice@example.com,en\n", encoding="utf-8")
    # An import while the request waits keeps it pending, and keeps what it suppressed.
    assert run(cfg, "import", str(f)) == 0
    got = Store(config.store.path).get_subscriber("alice@example.com")
    assert (got.status, got.suppressed) == ("pending", status)
    # Nobody confirms: after pending_days the row is kept, with its earlier status back
    # (swept by the next web subscribe to that shard, or by `digest send` for the store).
    later = now + timedelta(days=config.web.pending_days, seconds=1)
    store = Store(config.store.path)
    assert store.expire_pending(later - timedelta(days=config.web.pending_days),
                                email="alice@example.com") == 1
    got = Store(config.store.path).get_subscriber("alice@example.com")
    assert got is not None and (got.status, got.suppressed) == (status, "")
    assert "suppressed" not in got.to_dict()
    # The old CSV imported again: still not mailed.
    assert run(cfg, "import", str(f)) == 0
    got = Store(config.store.path).get_subscriber("alice@example.com")
    assert got.status == status
    assert [s.email for s in Store(config.store.path).list_subscribers("active")] == []


def test_whole_store_expiry_restores_a_complaint(cfg: Path, tmp_path: Path) -> None:
    from datetime import timedelta

    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    config, _, _ = _web_resubscribe(cfg, "spam@example.com", "complained", now)
    store = Store(config.store.path)
    assert store.expire_pending(now + timedelta(seconds=1)) == 1  # `digest send`'s sweep
    assert Store(config.store.path).get_subscriber("spam@example.com").status == "complained"
    f = tmp_path / "old.csv"
    f.write_text("email\nspam@example.com\n", encoding="utf-8")
    assert run(cfg, "import", str(f)) == 0
    assert Store(config.store.path).get_subscriber("spam@example.com").status == "complained"


def test_confirmed_resubscribe_clears_the_suppression(cfg: Path) -> None:
    from datetime import timedelta

    from digest.mail import tokens

    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    config, subs, _ = _web_resubscribe(cfg, "back@example.com", "unsubscribed", now)
    expires = now + tokens.CONFIRM_LIFETIME  # the link mailed for the request
    assert subs.confirm("back@example.com", expires, now + timedelta(hours=1),
                        activate=True) == "confirmed"
    got = Store(config.store.path).get_subscriber("back@example.com")
    assert (got.status, got.suppressed) == ("active", "")
    # Active now: nothing to expire.
    later = now + timedelta(days=30)
    assert Store(config.store.path).expire_pending(later) == 0
    assert Store(config.store.path).get_subscriber("back@example.com").status == "active"


def test_suppression_rules() -> None:
    from datetime import timedelta

    from digest import subscribers as rules
    from digest.models import Subscriber

    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    new = rules.new_subscriber("a@example.com", "en", None, None, "pending", now)
    complained = Subscriber("a@example.com", status="complained", created=now - timedelta(9))
    pend = Subscriber("a@example.com", status="pending", created=now - timedelta(1),
                      suppressed="complained")
    # A pending request repeated keeps what the first one suppressed.
    assert "suppressed" not in rules.subscribed(pend, new)
    # An unsubscribe of the pending request never weakens a complaint.
    unsub = Subscriber("a@example.com", status="unsubscribed", suppressed="complained")
    assert rules.subscribed(unsub, new)["suppressed"] == "complained"
    assert rules.subscribed(complained, new)["suppressed"] == "complained"
    # A bounce of an unconfirmed re-subscribe is not an operator's to undo.
    bounced = Subscriber("a@example.com", status="bounced", suppressed="unsubscribed")
    assert rules.reactivated(bounced) == ("unsubscribed", None)
    assert rules.reactivated(Subscriber("a@example.com", status="bounced", suppressed="bounced")
                             ) == ("reactivated", {"status": "active", "suppressed": ""})
    # Import: a suppressed pending row stays so; an active one carries no suppression.
    row, kept = rules.imported(pend, rules.new_subscriber("a@example.com", "en", None, None,
                                                          "active", now))
    assert kept and (row.status, row.suppressed) == ("pending", "complained")
    # The model: absent means none, and old rows keep their bytes.
    assert Subscriber.from_dict(pend.to_dict()) == pend
    assert "suppressed" not in Subscriber("a@example.com").to_dict()
    assert Subscriber.from_dict({"email": "a@example.com"}).suppressed == ""
