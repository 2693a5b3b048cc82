"""ruff and mypy --strict are part of the test command (README), so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=600)


def test_ruff_clean():
    p = _run("ruff", "check", "retentiond", "tests", "bench")
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_strict_clean():
    p = _run("mypy")
    assert p.returncode == 0, p.stdout + p.stderr
