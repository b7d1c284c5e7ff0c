"""Where a benchmark result came from: flowlib's commit and the machine, for the results files."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    """``git rev-parse --short HEAD``, flagged when ``flowlib/`` has uncommitted changes (``unknown`` without git)."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "flowlib"], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() + (" + uncommitted changes in flowlib/" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def machine(threads: int) -> str:
    """E.g. ``x86_64, 2 CPUs, torch 2.13.0+cpu, 1 thread``."""
    return f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {threads} thread{'s' * (threads != 1)}"
