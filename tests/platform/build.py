"""Obtain and cache the non-Python parts of the test platform, idempotently.

Everything is built from source with the local Go toolchain or fetched from package
registries through their ordinary clients (go, mvn, apt-get); a finished artefact is
recognised by a marker file so a second run does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.platform import paths, versions


class BuildError(RuntimeError):
    """A build step failed; the message names the step and its log file."""


def _run(cmd: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("a") as fh:
        fh.write(f"\n$ (cd {cwd} && {' '.join(cmd)})\n")
        fh.flush()
        proc = subprocess.run(
            cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False
        )
        fh.write(f"# exit {proc.returncode} after {time.monotonic() - started:.0f}s\n")
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise BuildError(
            f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}); log: {log}\n{tail}"
        )


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """An exclusive lock on the cache: one build at a time across processes."""
    root = paths.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_cached(name: str) -> bool:
    """Whether ``name`` (etcd, helm, kubeconform, kstatus, k8s, kafka) is already built."""
    if name == "k8s":
        return (paths.k8s_dir() / ".built").exists()
    if name == "kafka":
        return (paths.kafka_dir() / ".fetched").exists()
    version = {
        "etcd": versions.ETCD,
        "helm": versions.HELM,
        "kubeconform": versions.KUBECONFORM,
        "kstatus": versions.KSTATUS,
    }[name]
    return (paths.bin_dir() / f".{name}-{version}").exists()


def _go_env(gobin: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["CGO_ENABLED"] = "0"
    if gobin is not None:
        env["GOBIN"] = str(gobin)
    return env


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise BuildError(f"'{tool}' is not on PATH; the test platform needs it to build its parts")
    return found


K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def k8s_gomod(version: str = versions.KUBERNETES) -> str:
    """The go.mod that builds k8s.io/kubernetes commands as a dependency."""
    staging = "v0." + version.split(".", 1)[1]  # v1.34.4 -> v0.34.4
    lines = ["module aumos.local/testenv-k8s", "", "go 1.24.0", "", "godebug default=go1.24", ""]
    lines.append(f"require k8s.io/kubernetes {version}")
    lines.append("")
    lines.append("replace (")
    lines += [f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in versions.K8S_STAGING_MODULES]
    lines.append(")")
    return "\n".join(lines) + "\n"


def build_k8s(log_dir: Path) -> Path:
    """Build kube-apiserver, kube-controller-manager, kube-scheduler and kubectl; return their
    bin dir."""
    root = paths.k8s_dir()
    bindir = root / "bin"
    marker = root / ".built"
    if marker.exists() and all((bindir / c).exists() for c in K8S_COMMANDS):
        return bindir
    go = _require("go")
    root.mkdir(parents=True, exist_ok=True)
    log = log_dir / "build-k8s.log"
    (root / "go.mod").write_text(k8s_gomod())
    env = _go_env()
    pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS]
    # `go get` resolves the whole module graph once and writes go.sum.
    _run([go, "get", *[f"{p}@{versions.KUBERNETES}" for p in pkgs]], cwd=root, log=log, env=env)
    major, minor = versions.KUBERNETES.lstrip("v").split(".")[:2]
    ver_pkg = "k8s.io/component-base/version"
    ldflags = " ".join(
        [
            "-s -w",
            f"-X {ver_pkg}.gitVersion={versions.KUBERNETES}",
            f"-X {ver_pkg}.gitMajor={major}",
            f"-X {ver_pkg}.gitMinor={minor}",
            f"-X {ver_pkg}.gitTreeState=clean",
            f"-X {ver_pkg}.buildDate=1970-01-01T00:00:00Z",
            # client-go carries its own copy of the version variables (kubectl version).
            f"-X k8s.io/client-go/pkg/version.gitVersion={versions.KUBERNETES}",
            f"-X k8s.io/client-go/pkg/version.gitMajor={major}",
            f"-X k8s.io/client-go/pkg/version.gitMinor={minor}",
        ]
    )
    bindir.mkdir(exist_ok=True)
    _run(
        [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(bindir) + "/", *pkgs],
        cwd=root,
        log=log,
        env=env,
    )
    marker.write_text(versions.KUBERNETES + "\n")
    return bindir


def _go_install(pkg: str, name: str, log_dir: Path) -> Path:
    bindir = paths.bin_dir()
    version = pkg.rsplit("@", 1)[1]
    marker = bindir / f".{name}-{version}"
    target = bindir / name
    if marker.exists() and target.exists():
        return target
    bindir.mkdir(parents=True, exist_ok=True)
    # GOBIN install of a module@version needs no enclosing module.
    _run(
        [_require("go"), "install", "-trimpath", "-ldflags", "-s -w", pkg],
        cwd=bindir,
        log=log_dir / f"build-{name}.log",
        env=_go_env(bindir),
    )
    installed = bindir / pkg.rsplit("/", 1)[1].split("@")[0]
    if installed != target:
        installed.replace(target)
    marker.write_text(version + "\n")
    return target


def build_etcd(log_dir: Path) -> Path:
    """etcd's server module carries replace directives, so ``go install mod@v`` refuses it;
    build it as the dependency of a generated module instead (as for Kubernetes)."""
    bindir = paths.bin_dir()
    marker, target = bindir / f".etcd-{versions.ETCD}", bindir / "etcd"
    if marker.exists() and target.exists():
        return target
    go = _require("go")
    root = paths.cache_root() / f"etcd-{versions.ETCD}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text(
        "module aumos.local/testenv-etcd\n\ngo 1.24.0\n\n"
        f"require go.etcd.io/etcd/server/v3 {versions.ETCD}\n"
    )
    log, env = log_dir / "build-etcd.log", _go_env()
    _run([go, "get", f"go.etcd.io/etcd/server/v3@{versions.ETCD}"], cwd=root, log=log, env=env)
    bindir.mkdir(parents=True, exist_ok=True)
    _run(
        [
            go,
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            str(target),
            "go.etcd.io/etcd/server/v3",
        ],
        cwd=root,
        log=log,
        env=env,
    )
    marker.write_text(versions.ETCD + "\n")
    return target


def build_helm(log_dir: Path) -> Path:
    return _go_install(f"helm.sh/helm/v3/cmd/helm@{versions.HELM}", "helm", log_dir)


def build_kubeconform(log_dir: Path) -> Path:
    return _go_install(
        f"github.com/yannh/kubeconform/cmd/kubeconform@{versions.KUBECONFORM}",
        "kubeconform",
        log_dir,
    )


KSTATUS_MAIN = """\
// kstatus: print the kstatus verdict (sigs.k8s.io/cli-utils/pkg/kstatus/status, the health
// checker Flux and kpt use) of one Kubernetes object read as JSON on stdin, as one JSON line
// {"status": "InProgress|Current|Failed|Terminating|NotFound|Unknown", "message": "..."}.
// Generated by tests/platform/build.py.
package main

import (
\t"encoding/json"
\t"fmt"
\t"io"
\t"os"

\t"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
\tutiljson "k8s.io/apimachinery/pkg/util/json"
\t"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func fail(format string, args ...any) {
\tfmt.Fprintf(os.Stderr, "kstatus: "+format+"\\n", args...)
\tos.Exit(2)
}

func main() {
\tdata, err := io.ReadAll(os.Stdin)
\tif err != nil {
\t\tfail("reading stdin: %v", err)
\t}
\t// util/json turns integral numbers into int64, as the apiserver's decoder does; kstatus
\t// reads generation and observedGeneration as integers and would miss float64 values.
\tvar obj map[string]interface{}
\tif err := utiljson.Unmarshal(data, &obj); err != nil {
\t\tfail("decoding the object: %v", err)
\t}
\tif obj == nil {
\t\tfail("stdin holds no JSON object")
\t}
\tres, err := status.Compute(&unstructured.Unstructured{Object: obj})
\tif err != nil {
\t\tfail("computing the status: %v", err)
\t}
\tout, err := json.Marshal(map[string]string{"status": res.Status.String(), "message": res.Message})
\tif err != nil {
\t\tfail("encoding the result: %v", err)
\t}
\tfmt.Println(string(out))
}
"""


def kstatus_gomod() -> str:
    staging = "v0." + versions.KUBERNETES.split(".", 1)[1]  # the cluster's k8s.io/* version
    return (
        "module aumos.local/testenv-kstatus\n\ngo 1.24.0\n\n"
        f"require (\n\tsigs.k8s.io/cli-utils {versions.KSTATUS}\n"
        f"\tk8s.io/api {staging}\n\tk8s.io/apimachinery {staging}\n)\n"
    )


def build_kstatus(log_dir: Path) -> Path:
    """A tiny command around kstatus (``status.Compute``): one object as JSON on stdin, its
    verdict as one JSON line on stdout. Built as a generated module, like etcd."""
    bindir = paths.bin_dir()
    marker, target = bindir / f".kstatus-{versions.KSTATUS}", bindir / "kstatus"
    if marker.exists() and target.exists():
        return target
    go = _require("go")
    root = paths.cache_root() / f"kstatus-{versions.KSTATUS}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text(kstatus_gomod())
    (root / "go.sum").unlink(missing_ok=True)
    (root / "main.go").write_text(KSTATUS_MAIN)
    log, env = log_dir / "build-kstatus.log", _go_env()
    staging = "v0." + versions.KUBERNETES.split(".", 1)[1]
    _run(
        [
            go,
            "get",
            f"sigs.k8s.io/cli-utils/pkg/kstatus/status@{versions.KSTATUS}",
            f"k8s.io/api@{staging}",
            f"k8s.io/apimachinery@{staging}",
        ],
        cwd=root,
        log=log,
        env=env,
    )
    bindir.mkdir(parents=True, exist_ok=True)
    _run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(target), "."],
        cwd=root,
        log=log,
        env=env,
    )
    marker.write_text(versions.KSTATUS + "\n")
    return target


KAFKA_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>aumos.local</groupId>
  <artifactId>testenv-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <!-- the broker logs through slf4j 1.x; route it to log4j2 (log4j-core comes with kafka) -->
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""


def build_kafka(log_dir: Path) -> Path:
    """Fetch the Kafka broker jars and their dependencies; return the ``lib`` dir."""
    root = paths.kafka_dir()
    lib = root / "lib"
    marker = root / ".fetched"
    if marker.exists() and lib.is_dir():
        return lib
    mvn = _require("mvn")
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(KAFKA_POM.format(version=versions.KAFKA))
    cmd = [
        mvn,
        "-B",
        "-q",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    _run(cmd, cwd=root, log=log_dir / "build-kafka.log")
    marker.write_text(versions.KAFKA + "\n")
    return lib


if (
    __name__ == "__main__"
):  # pragma: no cover - manual entry: python -m tests.platform.build k8s etcd
    logs = paths.state_dir() / "logs"
    for what in sys.argv[1:]:
        t0 = time.monotonic()
        out = globals()[f"build_{what}"](logs)
        print(f"{what}: {out} ({time.monotonic() - t0:.0f}s)", flush=True)  # noqa: T201
