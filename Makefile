# Everyday commands. `make test` is the README's test command and what CI runs.
PY ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps run test test-fast test-all lint golden bench bench-full clean screenshots

install:
	$(PY) -m pip install -q -e '.[test]'

# Debian packages the tests drive for real: headless Chromium (with CJK fonts), newsboat and
# a throwaway PostgreSQL cluster.
system-deps:
	@command -v chromium >/dev/null && command -v newsboat >/dev/null && \
	  command -v systemd-analyze >/dev/null && \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && \
	  fc-list 2>/dev/null | grep -qi 'noto.*cjk' || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends \
	    chromium newsboat postgresql fonts-noto-cjk systemd)

run: install
	digest run

# Everything but the long forms, including the `external` tests (daemons, Chromium, newsboat,
# the bench); a tool they need that is missing is an error here, not a skip.
test: system-deps install
	DIGEST_REQUIRE_TOOLS=1 $(PY) -m pytest -q

# Hermetic: Python only, no daemons or browsers, under two minutes.
test-fast:
	$(PY) -m pytest -q -m "not external and not slow"

# The long forms: kill trials, fault matrices (see docs/RELIABILITY.md).
test-all: system-deps install
	DIGEST_REQUIRE_TOOLS=1 HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -m "slow or not slow"

lint:
	ruff check digest tests bench scripts

# Rewrite tests/golden/ from the current output (only files that differ); review with git diff.
golden:
	DIGEST_UPDATE_GOLDEN=1 $(PY) -m pytest -q -m "golden"

# Every web page (scripts/screenshots.py) and, when present, every email
# (scripts/screenshots_email.py) in headless Chromium, desktop and phone, light and dark,
# into docs/screenshots/. Needs Debian's chromium and fonts-noto-cjk (`make system-deps`).
screenshots: system-deps
	$(PY) scripts/screenshots.py --out docs/screenshots
	@if [ -f scripts/screenshots_email.py ]; then $(PY) scripts/screenshots_email.py --out docs/screenshots; fi

bench:
	$(PY) bench/run.py --quick

bench-full:
	$(PY) bench/run.py

clean:
	rm -rf public maildir build *.egg-info .pytest_cache .ruff_cache
