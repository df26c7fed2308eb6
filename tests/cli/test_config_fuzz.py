"""Property tests for config.toml: any value of any type at any key, unknown keys, bad crons
and bad zones either load or raise ConfigError `config.toml:LINE: [section].key: …` with the
line of that key — never another exception, never a traceback from the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digest.cli import main
from digest.config import SETTINGS, load_config
from digest.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "config.toml").read_text(encoding="utf-8").splitlines()
HEADER = re.compile(r"^\[\[?([a-z]+)\]\]?$")
KEY = re.compile(r"^([a-z_]+) = ")


def key_lines() -> list[tuple[int, str, str]]:
    """(0-based line index, section, key) of every setting in the shipped config.toml."""
    out, section = [], ""
    for i, line in enumerate(SHIPPED):
        if m := HEADER.match(line):
            section = m.group(1)
        elif (m := KEY.match(line)) and section != "tags":
            out.append((i, section, m.group(1)))
    return out


KEYS = key_lines()
SECTION_LINES = [i for i, line in enumerate(SHIPPED) if HEADER.match(line)]


def toml_string(s: str) -> str:
    # JSON string escapes are TOML basic-string escapes (\uXXXX for control characters)
    return json.dumps(s, ensure_ascii=False)


scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: "nan" if f != f else ("inf" if f == float("inf") else
                                        "-inf" if f == float("-inf") else repr(f))),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=30).map(toml_string),
    st.sampled_from(["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "0x1F", "0o17",
                     "1_000", "'literal'", '"""multi\nline"""', "''", '""']),
)
values = st.recursive(scalars, lambda c: st.one_of(
    st.lists(c, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), c, max_size=2).map(
        lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}")), max_leaves=4)

CRON_FIELDS = ["*", "*/0", "*/15", "61", "-1", "1-", "0-7", "7", "mon-fri", "mon-", "L", "?",
               "1,2,", "32", "13", "feb", "jan-dec", "1/2", "5-1", "*/99999999999", "0", "",
               "\u0661", "𝟙"]
crons = st.one_of(st.lists(st.sampled_from(CRON_FIELDS), min_size=3, max_size=7).map(" ".join),
                  st.text(max_size=20))
zones = st.one_of(st.sampled_from(["UTC", "Mars/Olympus", "../../etc/passwd", "/etc/localtime",
                                   "Europe/", "europe/berlin", "GMT+8", "UTC\x00", "", " ",
                                   "Asia/Shanghai ", "posixrules", "EST5EDT", "Factory"]),
                  st.text(max_size=20))


def write(tmp: Path, lines: list[str]) -> Path:
    p = tmp / "config.toml"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def check_error(path: Path, line_no: int | None, section: str, key: str) -> None:
    """Load `path`: fine, or a ConfigError naming the file, the line and the key."""
    try:
        load_config(path)
    except ConfigError as e:
        msg = e.message
        m = re.match(rf"^{re.escape(str(path))}:(\d+): (.*)$", msg, re.S)
        assert m, msg
        assert e.hint, msg
        if "TOML syntax" in msg:
            return  # a value TOML itself refuses: tomllib's line
        assert f".{key}" in m.group(2) or f"[{section}" in m.group(2), msg
        if line_no is not None:
            assert int(m.group(1)) == line_no, (msg, line_no)


COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])


@settings(max_examples=300, **COMMON)
@given(st.sampled_from(KEYS), values)
def test_any_value_at_any_key(tmp_path, where, value) -> None:
    i, section, key = where
    lines = list(SHIPPED)
    lines[i] = f"{key} = {value}"
    check_error(write(tmp_path, lines), i + 1, section, key)


@settings(max_examples=150, **COMMON)
@given(st.sampled_from(SECTION_LINES), st.from_regex(r"[a-z_][a-z0-9_-]{0,15}", fullmatch=True),
       scalars)
def test_unknown_keys_are_named_with_their_line(tmp_path, header, key, value) -> None:
    lines = list(SHIPPED)
    section = HEADER.match(lines[header]).group(1)
    known = {s.key for s in SETTINGS if s.section == section}
    assume(section != "tags" and key not in known)
    lines.insert(header + 1, f"{key} = {value}")
    path = write(tmp_path, lines)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    if "TOML syntax" not in e.value.message:
        assert e.value.message.startswith(f"{path}:{header + 2}: ")
        assert f".{key}: unknown key" in e.value.message


@settings(max_examples=200, **COMMON)
@given(st.sampled_from([k for k in KEYS if k[2] in ("cron", "ingest", "publish")]), crons)
def test_any_cron(tmp_path, where, cron) -> None:
    i, section, key = where
    lines = list(SHIPPED)
    lines[i] = f"{key} = {toml_string(cron)}"
    check_error(write(tmp_path, lines), i + 1, section, key)


@settings(max_examples=100, **COMMON)
@given(zones)
def test_any_zone(tmp_path, zone) -> None:
    (i, section, key), = [k for k in KEYS if k[2] == "timezone"]
    lines = list(SHIPPED)
    lines[i] = f"{key} = {toml_string(zone)}"
    check_error(write(tmp_path, lines), i + 1, section, key)


@settings(max_examples=60, **COMMON)
@given(st.binary(max_size=200))
def test_any_bytes_as_a_config_file(tmp_path, blob) -> None:
    p = tmp_path / "config.toml"
    p.write_bytes(blob)
    try:
        load_config(p)
    except ConfigError as e:
        assert e.message.startswith(f"{p}:") and e.hint


@pytest.mark.parametrize("old,new", [
    ('cron = "0 7 * * *"', 'cron = "*/0 * * * *"'),
    ("timezone = \"UTC\"", 'timezone = "Mars/Olympus"'),
    ("port = 8000", "port = [8000]"),
    ("[web]", "[web]\nlisten = 1"),
])
def test_cli_check_exits_1_with_line_and_hint_no_traceback(tmp_path, old, new) -> None:
    text = "\n".join(SHIPPED).replace(old, new, 1)
    p = tmp_path / "config.toml"
    p.write_text(text, encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "digest", "--config", str(p), "check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert re.search(r"config\.toml:\d+: \[", r.stderr) and "hint:" in r.stderr, r.stderr
    assert main(["--config", str(p), "check"]) == 1  # in-process: nothing escapes main()
