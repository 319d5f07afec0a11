"""The built images (``make images``), checked in buildah's local storage.

What is real: the images in buildah's default storage and ``buildah run --isolation chroot``
of their entry points as uid 10001, exactly as built. Nothing is built here: each test skips,
naming the command, when buildah or its image is missing, so the default suite on a machine
without images is unaffected (other modules are never skipped by this one).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from tests.images.script import images

SPECS = images.chart_specs()
IDS = [s.name for s in SPECS]
LABELS = ("source", "revision", "version")


def _inspect(spec: Any) -> dict[str, Any]:
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed: `make images` installs it and builds the images")
    proc = subprocess.run(
        ["buildah", "inspect", "--type", "image", spec.reference],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"{spec.reference} is not built: `make images` (or scripts/images.py build)")
    info: dict[str, Any] = json.loads(proc.stdout)
    return info


def _run(spec: Any, *command: str) -> subprocess.CompletedProcess[str]:
    with images.container(spec.reference) as ctr:
        return subprocess.run(
            images.run_command(ctr, command),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )


@pytest.mark.images
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_image_runs_as_a_non_root_user(spec: Any) -> None:
    # Setup
    config = _inspect(spec)["OCIv1"]["config"]

    # Run
    uid, _, gid = config.get("User", "").partition(":")

    # Assert
    assert uid == str(images.UID) and gid == str(images.UID), config.get("User")


@pytest.mark.images
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_image_carries_oci_labels(spec: Any) -> None:
    # Setup
    labels = _inspect(spec)["OCIv1"]["config"].get("Labels") or {}

    # Assert
    for key in LABELS:
        assert labels.get(f"org.opencontainers.image.{key}"), f"no {key} label"
    assert labels["org.opencontainers.image.version"] == spec.tag.split("-")[0]


@pytest.mark.images
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_entry_point_help_exits_0_as_uid_10001(spec: Any) -> None:
    # Setup
    _inspect(spec)

    # Run
    proc = _run(spec, *spec.help_command)

    # Assert
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "usage" in (proc.stdout + proc.stderr).lower()


@pytest.mark.images
def test_operator_chart_command_help_exits_0() -> None:
    # Setup: the chart's Deployment runs `python -m kopf run ...`, not the script.
    spec = SPECS[0]
    _inspect(spec)

    # Run
    proc = _run(spec, "python", "-m", "kopf", "run", "--help")

    # Assert
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.images
def test_operator_image_has_no_data_libraries() -> None:
    # Setup
    spec = SPECS[0]
    _inspect(spec)

    # Run
    proc = _run(
        spec,
        "python",
        "-c",
        "import importlib.util as u; print([m for m in ('torch', 'pandas', 'numpy', 'sdv')"
        " if u.find_spec(m)])",
    )

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.images
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_image_has_no_build_tools_caches_or_sources(spec: Any) -> None:
    # Setup
    _inspect(spec)

    # Run
    with images.mounted(spec.reference) as root:
        site = images.site_packages(root)
        present = [
            rel
            for rel in ("opt/build", "src", "tmp/dist", "root/.cache", "usr/bin/gcc")
            if (root / rel).exists()
        ]
        present += [f"site-packages/{p}" for p in ("pip", "wheel") if (site / p).exists()]

    # Assert
    assert present == []
