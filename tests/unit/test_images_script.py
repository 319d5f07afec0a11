"""The pure part of scripts/images.py: names, commands, values files, hash-pinned locks.

Nothing is built here; tests/images/ checks the images themselves once `make images` ran.
"""

from __future__ import annotations

import pytest
import yaml

from tests.images.script import REPO, images

CONSTRAINTS = REPO / "constraints"


@pytest.mark.unit
def test_images_are_named_as_the_chart_names_them() -> None:
    # Setup
    values = yaml.safe_load((REPO / "charts/aumos-tabular-engine/values.yaml").read_text())
    values["images"]["runner"]["argn"]["tag"] = "pinned"

    # Run
    specs = images.image_specs(values, "1.2.3")

    # Assert
    assert [(s.name, s.dockerfile, s.target) for s in specs] == [
        ("operator", "Dockerfile.operator", "operator"),
        ("core", "Dockerfile.runner", "core"),
        ("argn", "Dockerfile.runner", "argn"),
    ]
    refs = [s.reference for s in specs]
    assert refs == [
        "ghcr.io/aumos/tabular-operator:1.2.3",
        "ghcr.io/aumos/tabular-runner:1.2.3-core",
        "ghcr.io/aumos/tabular-runner:pinned",
    ]


@pytest.mark.unit
def test_operator_settings_default_to_the_runner_images_the_chart_builds() -> None:
    # Setup
    from tabular_operator.settings import OperatorSettings

    # Run
    specs = {s.name: s.reference for s in images.chart_specs()}
    fields = OperatorSettings.model_fields

    # Assert
    assert fields["runner_image_core"].default == specs["core"]
    assert fields["runner_image_argn"].default == specs["argn"]


@pytest.mark.unit
def test_select_names_the_known_images_when_one_is_unknown() -> None:
    # Setup
    specs = images.chart_specs()

    # Run
    with pytest.raises(images.ImagesError) as err:
        images.select(specs, ["core", "gpu"])

    # Assert
    assert "'gpu'" in str(err.value) and "operator, core, argn" in str(err.value)
    assert [s.name for s in images.select(specs, [])] == ["operator", "core", "argn"]


@pytest.mark.unit
def test_buildah_command_carries_base_target_labels_and_the_ca_only_as_a_build_mount() -> None:
    # Setup
    spec = images.chart_specs()[1]
    labels = images.oci_labels(spec, version="0.1.0", revision="abc", source="src", base="b:1")

    # Run
    cmd = images.build_command(
        "buildah", spec, base="b:1", labels=labels, pip_cert="/etc/ssl/ca.crt"
    )

    # Assert
    assert cmd[:2] == ["buildah", "bud"] and "--layers" in cmd and cmd[-1] == "."
    assert cmd[cmd.index("--isolation") + 1] == "chroot"
    assert cmd[cmd.index("--target") + 1] == "core"
    assert cmd[cmd.index("-t") + 1] == "ghcr.io/aumos/tabular-runner:0.1.0-core"
    assert "PYTHON_IMAGE=b:1" in cmd
    for key in ("source", "revision", "version"):
        assert any(a.startswith(f"org.opencontainers.image.{key}=") for a in cmd)
    assert "/etc/ssl/ca.crt:/run/aumos-pip-ca.crt:ro" in cmd
    assert "PIP_CERT=/run/aumos-pip-ca.crt" in cmd


@pytest.mark.unit
def test_docker_command_has_no_buildah_flags() -> None:
    # Setup
    spec = images.chart_specs()[0]

    # Run
    cmd = images.build_command("docker", spec, base="python:3.11", labels={}, no_cache=True)

    # Assert
    assert cmd[:2] == ["docker", "build"] and "--no-cache" in cmd
    assert "--isolation" not in cmd and "--layers" not in cmd


@pytest.mark.unit
def test_digests_become_a_values_file_and_set_flags() -> None:
    # Setup
    specs = images.chart_specs()
    found = {"operator": "sha256:aa", "argn": "sha256:cc"}

    # Run
    values = images.digests_values(specs, found)
    flags = images.set_flags(specs, found)

    # Assert
    assert values == {
        "images": {
            "operator": {"repository": "ghcr.io/aumos/tabular-operator", "digest": "sha256:aa"},
            "runner": {
                "argn": {"repository": "ghcr.io/aumos/tabular-runner", "digest": "sha256:cc"}
            },
        }
    }
    assert flags == [
        "--set images.operator.digest=sha256:aa",
        "--set images.runner.argn.digest=sha256:cc",
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("sources", "mirror"),
    [
        (
            "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\n",
            "http://m.example/debian",
        ),
        ("URIs: http://m.example/debian-security\n", None),
        ("deb [arch=amd64] http://m.example/debian bookworm main\n", "http://m.example/debian"),
        ("# nothing\n", None),
    ],
    ids=["deb822", "security-only", "one-line", "empty"],
)
def test_apt_mirror_is_read_from_the_hosts_sources(sources: str, mirror: str | None) -> None:
    # Run / Assert
    assert images.apt_mirror(sources) == mirror


@pytest.mark.unit
def test_unhashed_finds_requirements_without_a_hash() -> None:
    # Setup
    text = "a==1 \\\n    --hash=sha256:00\nb==2\nc==3 \\\n    --hash=sha256:11\nd==4\n"

    # Run / Assert
    assert images.unhashed(text) == ["b", "d"]


# -- the hash-pinned files agree with the constraints they were generated from ----------


def _read(name: str) -> str:
    return (CONSTRAINTS / name).read_text()


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(images.LOCKS), ids=sorted(images.LOCKS))
def test_every_requirement_of_a_hash_file_is_hash_pinned(name: str) -> None:
    # Setup
    text = _read(name)

    # Run
    pinned = images.pins(text)

    # Assert
    assert pinned, f"{name} pins nothing"
    assert images.unhashed(text) == [], f"{name}: requirements without --hash"
    assert text.startswith("# Generated by `python scripts/images.py lock`")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "source"),
    [("operator-hashes.txt", "core.txt"), ("core-hashes.txt", "core.txt")],
    ids=["operator", "core"],
)
def test_hash_files_pin_what_the_core_constraints_pin(name: str, source: str) -> None:
    # Setup
    constraints = images.pins(_read(source))

    # Run
    drift = {
        pkg: (version, constraints[pkg])
        for pkg, version in images.pins(_read(name)).items()
        if pkg in constraints and constraints[pkg] != version
    }

    # Assert
    assert drift == {}, f"{name} drifted from {source}: `python scripts/images.py lock`"


@pytest.mark.unit
def test_argn_hash_file_is_exactly_the_argn_lock() -> None:
    # Run / Assert
    assert images.pins(_read("argn-hashes.txt")) == images.pins(_read("argn.txt"))


@pytest.mark.unit
def test_hash_files_hold_the_engines_and_the_build_tools() -> None:
    # Setup
    operator = images.pins(_read("operator-hashes.txt"))
    core = images.pins(_read("core-hashes.txt"))
    build = images.pins(_read("build-hashes.txt"))

    # Assert
    assert "kopf" in operator and not {"torch", "pandas", "numpy"} & operator.keys()
    assert {"sdv", "torch", "pandas", "anonymeter"} <= core.keys()
    assert {"setuptools", "wheel"} <= build.keys()
