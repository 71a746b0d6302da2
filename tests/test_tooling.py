"""The linters the project holds itself to: ruff (with the docstring rules) and mypy on ``src/``, both clean.

Their settings are in ``pyproject.toml``; both tools are pinned in ``constraints.txt`` and installed by the
``test`` extra, so ``make test`` runs them from nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean_on_src():
    res = _run("ruff", "check", "src", "--no-cache", "--output-format", "concise")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_is_clean_on_src():
    res = _run("mypy", "--no-incremental", "--cache-dir", "/dev/null")
    assert res.returncode == 0, res.stdout + res.stderr
