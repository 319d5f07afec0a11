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


def image_mode() -> bool:
    """Whether the node agent runs containers inside built images (``make test-images``).

    Then the chart's own image names are used everywhere (what ``make images`` tags), not the
    names ``tests/platform/images.yaml`` maps to this checkout's processes.
    """
    return os.environ.get("AUMOS_NODE_AGENT_CONTAINERS", "process") == "image"


def chart_image(component: str) -> str:
    """The chart's default image of ``operator``, ``core`` or ``argn`` (values + appVersion)."""
    import yaml

    chart = REPO_ROOT / "charts" / "aumos-tabular-engine"
    version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    images = yaml.safe_load((chart / "values.yaml").read_text())["images"]
    if component == "operator":
        return f"{images['operator']['repository']}:{version}"
    return f"{images['runner'][component]['repository']}:{version}-{component}"
