"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def argn_env() -> Path:
    """The argn environment, built once per CI run (cached under the cache dir)."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "venv.sh"), "argn"],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])
