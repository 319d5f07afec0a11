"""Benchmark (not a test): the operator under a burst of jobs, and at rest with many.

1. **Burst**: ``--jobs`` (100) SynthesisJobs on tiny data (the first 60 rows of Palmer
   penguins, GaussianCopula) created at once. Prints p50/p95/max of *create → train Job
   created* (a watch on batch Jobs timestamps each ADDED event), the time until all are
   COMPLETE, and the operator's peak RSS. Stage pods request ``--pod-cpu``/``--pod-memory``
   (as the chart's ``runner.defaultRequests`` do), so the burst queues on the nodes' capacity.
2. **At rest**: ``--idle`` (1000) suspended SynthesisJobs (they never start a stage): the
   operator's RSS once all are QUEUED, and its CPU use over ``--rest-seconds`` (60) after that.

Runs against a fresh local platform (k8s + S3, started and stopped here) and the operator as
a process (``python -m tabular_operator``), like the e2e tests.

Usage::

    python benchmarks/bench_operator.py [--jobs 100] [--idle 1000] [--skip-burst] [--skip-idle]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import watch
from tests.e2e.operator_harness import Cluster, OperatorProcess
from tests.platform import testenv

TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of the operator process tree (MB)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().split()
            if int(entry.name) != pid and int(stat[4]) != pid:  # the process and its group
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICKS


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class JobWatch(threading.Thread):
    """Timestamps the first ADDED event of each ``<name>-train`` Job in a namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.first_seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            stream = watch.Watch().stream(
                self.cluster.batch.list_namespaced_job, self.namespace, timeout_seconds=5
            )
            for event in stream:
                name = event["object"].metadata.name
                if event["type"] == "ADDED" and name.endswith("-train"):
                    self.first_seen.setdefault(name.removesuffix("-train"), time.monotonic())


def job(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"uri": "s3://datasets/tiny/penguins-60.csv"},
        "generator": {"type": "gaussian_copula"},
        "rows": 50,
        "validation": {"privacy": False, "qualitySampleRows": 100},
    }
    body.update(spec)
    return {"kind": "SynthesisJob", "metadata": {"name": name}, "spec": body}


def phases(cluster: Cluster, namespace: str) -> dict[str, str]:
    items = cluster.custom.list_namespaced_custom_object(
        "tabular.aumos.io", "v1alpha1", namespace, "synthesisjobs"
    )["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}


def burst(cluster: Cluster, op: OperatorProcess, n: int, timeout: float) -> None:
    ns = cluster.namespace("burst")
    watcher = JobWatch(cluster, ns)
    watcher.start()
    time.sleep(1)
    created: dict[str, float] = {}
    start = time.monotonic()
    for i in range(n):
        name = f"tiny-{i:03d}"
        cluster.create(ns, job(name))
        created[name] = time.monotonic()
    print(f"created {n} SynthesisJobs in {time.monotonic() - start:.1f}s")
    peak = 0.0
    done: dict[str, str] = {}
    while time.monotonic() - start < timeout:
        assert op.proc is not None
        peak = max(peak, rss_mb(op.proc.pid))
        done = {k: v for k, v in phases(cluster, ns).items() if v in ("COMPLETE", "FAILED")}
        if len(done) == n:
            break
        time.sleep(2)
    total = time.monotonic() - start
    watcher.stop.set()
    latency = [watcher.first_seen[k] - created[k] for k in created if k in watcher.first_seen]
    failed = sum(1 for v in done.values() if v == "FAILED")
    print(f"burst: {n} jobs, {len(done)} finished ({failed} FAILED) in {total:.0f}s")
    if latency:
        print(
            f"  create -> train Job created: p50 {statistics.median(latency):.2f}s, "
            f"p95 {pct(latency, 0.95):.2f}s, max {max(latency):.2f}s "
            f"(target p95 <= 1 s; {len(latency)} of {n} seen)"
        )
    print(f"  operator peak RSS during the burst: {peak:.0f} MB")


def at_rest(cluster: Cluster, op: OperatorProcess, n: int, rest_s: float) -> None:
    ns = cluster.namespace("idle")
    start = time.monotonic()
    for i in range(n):
        cluster.create(ns, job(f"idle-{i:04d}", suspend=True))
    print(f"created {n} suspended SynthesisJobs in {time.monotonic() - start:.0f}s")
    while sum(1 for v in phases(cluster, ns).values() if v == "QUEUED") < n:
        time.sleep(2)
    print(f"  all QUEUED after {time.monotonic() - start:.0f}s")
    time.sleep(10)
    assert op.proc is not None
    pid = op.proc.pid
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(rest_s)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    print(
        f"at rest with {n} idle jobs: operator RSS {rss_mb(pid):.0f} MB (target <= 300 MB), "
        f"CPU {100 * cpu:.1f}% of one core over {rest_s:.0f}s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--rest-seconds", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--pod-cpu", default="250m")
    ap.add_argument("--pod-memory", default="1Gi")
    ap.add_argument("--skip-burst", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="aumos-bench-operator-"))
    env = testenv.start(["k8s", "s3"], state)
    try:
        from minio import Minio

        from tabular_runner import datasets
        from tabular_runner.spec import DataFormat

        s3 = env.s3_server
        assert s3 is not None and env.kubeconfig is not None
        m = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False, region=s3.region)
        m.make_bucket("datasets")
        data = state / "penguins.csv"
        datasets.export("penguins", data, DataFormat.CSV)
        tiny = state / "penguins-60.csv"
        tiny.write_text("".join(data.read_text().splitlines(keepends=True)[:61]))
        m.fput_object("datasets", "tiny/penguins-60.csv", str(tiny))
        cluster = Cluster(Path(env.kubeconfig))
        import subprocess

        from tests.e2e.operator_harness import REPO, kubectl_binary

        subprocess.run(
            [
                kubectl_binary(),
                "--kubeconfig",
                env.kubeconfig,
                "apply",
                "--server-side",
                "-f",
                str(REPO / "crds"),
            ],
            check=True,
            capture_output=True,
        )
        time.sleep(3)
        op = OperatorProcess(
            Path(env.kubeconfig),
            s3,
            state / "operator",
            env={
                "AUMOS_RUNNER_DEFAULT_CPU": args.pod_cpu,
                "AUMOS_RUNNER_DEFAULT_MEMORY": args.pod_memory,
                "AUMOS_RECONCILE_INTERVAL_SECONDS": "10",
                "AUMOS_LEDGER_FILE": "",
            },
        )
        op.start()
        time.sleep(5)
        try:
            if not args.skip_burst:
                burst(cluster, op, args.jobs, args.timeout)
            if not args.skip_idle:
                at_rest(cluster, op, args.idle, args.rest_seconds)
        finally:
            op.stop()
    finally:
        testenv.stop(state)


if __name__ == "__main__":
    main()
