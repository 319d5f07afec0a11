"""Where the test platform keeps its cache (binaries) and its state (a running environment)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.platform import versions

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """Root of the shared build cache; survives ``make testenv-down``."""
    base = os.environ.get("AUMOS_CACHE_DIR") or str(Path.home() / ".cache" / "aumos-tabular-engine")
    return Path(base) / "testenv"


def k8s_dir() -> Path:
    return cache_root() / f"k8s-{versions.KUBERNETES}"


def bin_dir() -> Path:
    """etcd, helm and kubeconform (the Kubernetes binaries stay in ``k8s_dir()/bin``)."""
    return cache_root() / "bin"


def kafka_dir() -> Path:
    return cache_root() / f"kafka-{versions.KAFKA}"


def state_dir() -> Path:
    """The running environment of this checkout (git-ignored ``.testenv/``)."""
    return Path(os.environ.get("AUMOS_TESTENV_DIR") or (REPO_ROOT / ".testenv"))
