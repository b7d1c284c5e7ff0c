"""A pytest plugin: how long nbval took to run each chapter notebook.

Loaded with ``-p tests.nbval_timing`` by the Makefile's test command. It sums
the durations of each notebook's cell items (setup, call and teardown, so the
kernel start counts) and, at the end of the session, writes them to
``_build/nbval_times.json``. ``scripts/prime_cache.py`` hands them to the book
build, whose "execution times" page shows them: in ``make test`` the chapters
are executed once, by nbval, and the book is built from the checked outputs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "_build" / "nbval_times.json"

_seconds: dict[str, float] = defaultdict(float)
_failed: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if not path.endswith(".ipynb"):
        return
    _seconds[path] += report.duration
    if report.failed:
        _failed.add(path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput") or not _seconds:
        return  # an xdist worker: the controller gathers every report and writes the file
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    times = {path: {"seconds": round(seconds, 2), "passed": path not in _failed} for path, seconds in _seconds.items()}
    OUTPUT.write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
