"""The kill -9 run of the medallion layers, in the background of the test session.

Its drivers are separate processes on their own workspace: the sequence needs nothing of
the tests but the stack, so it runs while the tests that do not stop a service run, and
``test_recovery`` joins it and compares its tables with an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# At least 5 kills spread over bronze and silver (issue 3), and 3 during gold, one of
# them inside a MERGE (issue 5): at a random moment after a line the layer logs (gold's
# first gate: its batch 0 is planned), or as gold logs that batch 1's first MERGE begins
# (what it logs after says whether that MERGE had ended).
PLAN = (
    *[("bronze", "layer bronze: starting", 0.5, 5.0)] * 3,
    *[("silver", "layer silver: starting", 0.5, 5.0)] * 2,
    *[("gold", "gate gold.", 0.0, 8.0)] * 2,
    ("gold merge", "gold batch 1: merging gold.", 0.0, 0.1),
)
LINE_TIMEOUT_S = 400
FINAL_TIMEOUT_S = 600
# Runs started in this session: a test that stops a service waits for them first.
STARTED: list[CrashRun] = []


@dataclass
class CrashOutcome:
    kills: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)  # what each driver did, for a failure
    final: subprocess.CompletedProcess | None = None


class CrashRun:
    """Drivers of ``workspace`` started and killed per ``PLAN`` in a thread, then one run to
    the end. ``produce_last`` sends the last records just before the kill inside a MERGE."""

    def __init__(self, workspace: str, produce_last: Callable[[], None]) -> None:
        self.workspace = workspace
        self.command = [
            sys.executable,
            "-m",
            "spark.run",
            "--workspace",
            workspace,
            "--layers",
            "bronze,silver,gold",
        ]
        self.environment = {**os.environ, "REELHOUSE_SOURCE_MAX_OFFSETS_PER_TRIGGER": "10000"}
        self.produce_last = produce_last
        self.outcome = CrashOutcome()
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="kill-9-run", daemon=True)

    def start(self) -> CrashRun:
        STARTED.append(self)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Wait for the sequence to end, whatever its outcome (``result`` tells that)."""
        self._thread.join()

    def result(self) -> CrashOutcome:
        """Wait for the sequence to end; raise what stopped it, if anything did."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.outcome

    def cancel(self) -> None:
        """Kill the driver running now and wait for the thread (the session is ending)."""
        self._cancelled.set()
        process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            self._kill_per_plan()
            if not self._cancelled.is_set():
                self.outcome.final = self._run_to_the_end()
        except BaseException as error:  # handed to the test that joins
            self._error = error

    def _driver(self, **options) -> subprocess.Popen:
        """A driver in a process group of its own, so a kill reaches its JVM too."""
        return subprocess.Popen(
            self.command,
            env=self.environment,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **options,
        )

    def _run_to_the_end(self) -> subprocess.CompletedProcess:
        """One more driver, not killed: its outcome (killed only by ``cancel``)."""
        self._process = process = self._driver(stdout=subprocess.PIPE)
        try:
            stdout, stderr = process.communicate(timeout=FINAL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        return subprocess.CompletedProcess(self.command, process.returncode, stdout, stderr)

    def _kill_per_plan(self) -> None:
        rng = random.Random()
        for phase, line, low_s, high_s in PLAN:
            if self._cancelled.is_set():
                return
            if phase == "gold merge":
                self.produce_last()
            started = time.monotonic()
            self._process = process = self._driver()
            seen = wait_for_line(process, line, LINE_TIMEOUT_S)
            if seen is True:
                time.sleep(rng.uniform(low_s, high_s))
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    if phase != "gold merge" or last_merge_unfinished(process.stderr.read()):
                        self.outcome.kills.append(phase)
            process.wait(timeout=60)
            note = "" if seen is True else f" ({seen})"
            self.outcome.phases.append(f"{phase}: {time.monotonic() - started:.1f}s{note}")


def last_merge_unfinished(stderr_after: str) -> bool:
    """Whether a process killed after a "merging" line was inside a MERGE: the last MERGE
    it logged after that line (if any) began and did not end."""
    merges = [
        line
        for line in stderr_after.splitlines()
        if ": merging gold." in line or ": merged gold." in line
    ]
    return not merges or ": merging gold." in merges[-1]


def wait_for_line(process: subprocess.Popen, text: str, timeout_s: float) -> bool | str:
    """True once ``process`` logs a line holding ``text``; else why not, in one line."""
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            errors = [line.strip() for line in seen if "error" in line.lower()][-5:]
            return f"process ended before {text!r}: {errors}"
        seen.append(line)
        if text in line:
            return True
    return f"no {text!r} within {timeout_s}s"
