# Everyday commands. `make test` is the README's test command and what CI runs.
PY ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps run test test-all lint golden bench bench-full clean

install:
	$(PY) -m pip install -q -e '.[test]'

# Debian packages the tests drive for real: headless Chromium and newsboat.
system-deps:
	@command -v chromium >/dev/null && command -v newsboat >/dev/null || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium newsboat)

run: install
	digest run

test: system-deps install
	$(PY) -m pytest -q

# The long forms: kill trials, fault matrices (see docs/RELIABILITY.md).
test-all: system-deps install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -m "slow or not slow"

lint:
	ruff check digest tests bench

golden:
	DIGEST_UPDATE_GOLDEN=1 $(PY) -m pytest -q tests -k golden

bench:
	$(PY) bench/run.py --quick

bench-full:
	$(PY) bench/run.py

clean:
	rm -rf public maildir build *.egg-info .pytest_cache .ruff_cache
