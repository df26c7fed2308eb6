"""SIGKILL-at-random-moments runner shared by the hardening kill tests.

A trial starts a CLI command (`python -m digest --config … CMD`) in a subprocess, waits a
random time drawn from a window calibrated on one uninterrupted run, and SIGKILLs it unless
it already finished; the test's `check` then inspects what was left and restarts the work.
Randomness is seeded, so a failing trial is reproducible by its seed and index. Every wait
is bounded (`TIMEOUT` per process); nothing here asserts on speed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 180.0  # bound for one uninterrupted CLI run (a hang fails the test, not CI)


def digest_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "digest", "--config", str(config), *args]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def run(cmd: Sequence[str], extra_env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run to completion (the restart after a kill); bounded by TIMEOUT."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=TIMEOUT,
                          env=env(**(extra_env or {})), cwd=cwd)


@dataclass
class Trial:
    index: int
    delay: float  # seconds after start when the kill was sent
    killed: bool  # False: the command finished before the kill time
    returncode: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class Figures:
    """What a series of trials found; the numbers docs/RELIABILITY.md reports."""

    trials: int = 0
    killed: int = 0
    finished: int = 0
    lost: int = 0
    doubled: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + n

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.notes.items()))
        return (f"trials={self.trials} killed={self.killed} finished={self.finished} "
                f"lost={self.lost} doubled={self.doubled} {extra}").rstrip()


def calibrate(cmd: Sequence[str], prepare: Callable[[], None],
              extra_env: dict[str, str] | None = None, cwd: Path | None = None
              ) -> tuple[float, float]:
    """(startup, full): seconds for the interpreter + imports, and for one whole run.
    Used only to aim the kills (a window), never asserted on."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import digest.cli, digest.pipeline"],
                   capture_output=True, timeout=TIMEOUT, env=env(**(extra_env or {})), cwd=cwd)
    startup = time.perf_counter() - t0
    prepare()
    t0 = time.perf_counter()
    r = run(cmd, extra_env, cwd)
    full = time.perf_counter() - t0
    assert r.returncode in (0, 1), r.stderr[-3000:]
    return startup, full


def kill_at_random(cmd: Sequence[str], delay: float, index: int,
                   extra_env: dict[str, str] | None = None, cwd: Path | None = None) -> Trial:
    """Start `cmd`, SIGKILL it `delay` seconds later unless it is already done."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(**(extra_env or {})), cwd=cwd)
    try:
        out, err = proc.communicate(timeout=delay)
        return Trial(index, delay, False, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=TIMEOUT)
        # it may have exited on its own between the timeout and the signal
        return Trial(index, delay, proc.returncode == -signal.SIGKILL, proc.returncode, out, err)


def trials(n: int, seed: int, cmd: Sequence[str] | Callable[[int], Sequence[str]],
           window: tuple[float, float],
           prepare: Callable[[int], None], check: Callable[[Trial, Figures], None],
           extra_env: dict[str, str] | None = None, cwd: Path | None = None) -> Figures:
    """`n` trials: prepare(i), start and kill at uniform(window), check(trial, figures).
    `cmd` may be a function of the trial index (a command whose arguments change)."""
    rng = random.Random(seed)
    figures = Figures()
    lo, hi = window
    for i in range(n):
        prepare(i)
        argv = cmd(i) if callable(cmd) else cmd
        t = kill_at_random(argv, rng.uniform(lo, hi), i, extra_env, cwd)
        figures.trials += 1
        if t.killed:
            figures.killed += 1
            assert t.returncode == -signal.SIGKILL, (i, t.returncode, t.stderr[-2000:])
        else:
            figures.finished += 1
            assert t.returncode in (0, 1) and "Traceback" not in t.stderr, (i, t.stderr[-3000:])
        check(t, figures)
    return figures


def kill_window(startup: float, full: float, tail: float = 1.1) -> tuple[float, float]:
    """Aim most kills past the imports, into the work (and with tail > 1 a few past the end)."""
    return (startup * 0.7, max(full * tail, startup + 0.05))
