"""pytest plugin: the local test platform as session fixtures.

Loaded from the root conftest (``pytest_plugins = ["tests.platform.plugin"]``).

What is real: etcd, kube-apiserver, kube-controller-manager, kube-scheduler (Kubernetes' own
code), PostgreSQL, Kafka and SeaweedFS. What is not: the kubelet of the two nodes
(``aumos-cpu-node``, ``aumos-gpu-node``), replaced by :mod:`tests.platform.node_agent`, which
runs containers as local processes.

Attach or start: when ``make testenv`` left a healthy ``.testenv/``, fixtures use it and stop
nothing. Otherwise each fixture starts only the component it needs (``postgres_dsn`` starts
PostgreSQL alone, ``s3_server`` SeaweedFS alone) in a private state dir, and the session
stops them at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.platform import paths, procs, services, testenv


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aumos-platform")
    group.addoption(
        "--cluster",
        choices=("local", "kind"),
        default="local",
        help="Kubernetes for e2e tests: 'local' (built control plane + node agent) "
        "or 'kind' (pytest-kind, needs docker)",
    )


class Platform:
    """Components of this session: attached (owned by make testenv) or started here."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.attached = testenv.Env.load(paths.state_dir())
        if self.attached is not None and not testenv.healthy(self.attached):
            self.attached = None
        if paths.image_mode():
            # `make testenv`'s node agent runs processes; image mode needs an agent of its own.
            self.attached = None
        self._own: dict[str, testenv.Env] = {}
        self._dirs: list[Path] = []
        self._kind: Any = None

    def _private_state(self, component: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=f"aumos-testenv-{component}-"))
        d.chmod(0o755)  # postgres runs as its own user and must traverse it
        self._dirs.append(d)
        return d

    def env(self, component: str) -> testenv.Env:
        if self.attached is not None and component in self.attached.components:
            return self.attached
        if component not in self._own:
            state = self._private_state(component)
            try:
                self._own[component] = testenv.start([component], state)
            except BaseException:
                self._dirs.remove(state)  # keep its logs: the error names them
                raise
        return self._own[component]

    def kubeconfig(self) -> Path:
        if self.cluster == "kind":
            return self._kind_cluster()
        env = self.env("k8s")
        assert env.kubeconfig is not None
        return Path(env.kubeconfig)

    def _kind_cluster(self) -> Path:
        missing = [tool for tool in ("docker", "kind") if shutil.which(tool) is None]
        if not missing and subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            missing.append("a running docker daemon")
        try:
            from pytest_kind import KindCluster  # type: ignore[import-not-found]
        except ImportError:
            missing.append("pytest-kind")
        if missing:
            pytest.skip(
                f"--cluster=kind needs {', '.join(missing)}; use --cluster=local (the default) here"
            )
        if self._kind is None:
            self._kind = KindCluster("aumos-tabular-engine")
            self._kind.create()
        return Path(self._kind.kubeconfig_path)

    def close(self) -> None:
        for env in self._own.values():
            testenv.stop(Path(env.state))
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        if self._kind is not None:
            self._kind.delete()


@pytest.fixture(scope="session")
def _platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    platform = Platform(request.config.getoption("--cluster"))
    try:
        yield platform
    finally:
        platform.close()


@pytest.fixture(scope="session")
def testenv_all(_platform: Platform) -> testenv.Env:
    """Every component (for tests that need the whole platform at once)."""
    for c in testenv.COMPONENTS:
        _platform.env(c)
    return _platform.env("k8s")


@pytest.fixture(scope="session")
def kubeconfig(_platform: Platform) -> Path:
    """Path of an admin (system:masters) kubeconfig of the session's cluster."""
    return _platform.kubeconfig()


# ``testenv`` is the documented name; it is the Kubernetes part (the services have their own).
@pytest.fixture(scope="session", name="testenv")
def testenv_fixture(_platform: Platform, kubeconfig: Path) -> testenv.Env:
    """The running local environment (control plane + node agent); attached or started."""
    return _platform.env("k8s")


@pytest.fixture(scope="session")
def sa_kubeconfig(
    kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """Factory ``(namespace, name, expiration_seconds=3600) -> Path``: a ServiceAccount kubeconfig.

    The token comes from the TokenRequest API, so the ServiceAccount must exist.
    """
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    admin = (
        json.loads(Path(kubeconfig).read_text())
        if Path(kubeconfig).read_text().lstrip().startswith("{")
        else None
    )
    out_dir = tmp_path_factory.mktemp("sa-kubeconfigs")

    def make(namespace: str, name: str, expiration_seconds: int = 3600) -> Path:
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        token = api.create_namespaced_service_account_token(name, namespace, req).status.token
        cfg = api.api_client.configuration
        cluster: dict[str, Any] = {"server": cfg.host}
        if admin is not None:
            cluster = admin["clusters"][0]["cluster"]
        elif cfg.ssl_ca_cert:
            cluster["certificate-authority"] = cfg.ssl_ca_cert
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "sa",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": f"{namespace}-{name}", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "sa",
                    "context": {
                        "cluster": "c",
                        "user": f"{namespace}-{name}",
                        "namespace": namespace,
                    },
                }
            ],
        }
        path = out_dir / f"{namespace}-{name}.kubeconfig"
        path.write_text(json.dumps(doc))
        return path

    return make


@pytest.fixture(scope="session")
def s3_tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.S3Tenants]:
    """A SeaweedFS of its own (never an attached one: identities are fixed at start, ~1 s)
    with least-privilege identities: a read-only ``datasets`` identity and two tenants, each
    ``Admin`` of its own bucket only (see :class:`~tests.platform.services.S3Tenants`)."""
    root = tmp_path_factory.mktemp("s3-tenants")
    group = procs.ProcessGroup(root)
    try:
        yield services.start_seaweedfs_tenants(group, root / "s3")
    finally:
        group.stop_all()


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The pinned helm binary (built into the cache on first use)."""
    return testenv.build_tool("helm", paths.cache_root() / "logs")


@pytest.fixture(scope="session")
def kubeconform_bin() -> Path:
    """The pinned kubeconform binary (built into the cache on first use)."""
    return testenv.build_tool("kubeconform", paths.cache_root() / "logs")


@pytest.fixture(scope="session")
def kstatus_bin() -> Path:
    """A command around kstatus (sigs.k8s.io/cli-utils, Flux's health checker): one object as
    JSON on stdin, ``{"status": ..., "message": ...}`` on stdout (built on first use)."""
    return testenv.build_tool("kstatus", paths.cache_root() / "logs")


@pytest.fixture(scope="session")
def postgres_dsn(_platform: Platform) -> str:
    """libpq URL ``postgresql://user:pw@127.0.0.1:port/aumos`` (for psycopg.connect)."""
    env = _platform.env("postgres")
    assert env.postgres_dsn is not None
    return env.postgres_dsn


@pytest.fixture(scope="session")
def database_url(_platform: Platform) -> str:
    """SQLAlchemy URL ``postgresql+psycopg://...`` (what AUMOS_DATABASE_URL holds)."""
    env = _platform.env("postgres")
    assert env.database_url is not None
    return env.database_url


@pytest.fixture(scope="session")
def kafka_bootstrap(_platform: Platform) -> str:
    """``127.0.0.1:port`` of a single-node KRaft Kafka broker."""
    env = _platform.env("kafka")
    assert env.kafka_bootstrap is not None
    return env.kafka_bootstrap


@pytest.fixture(scope="session")
def s3_server(_platform: Platform) -> services.S3Server:
    """A SeaweedFS S3 endpoint: ``endpoint`` (host:port), ``url``, ``access_key``, ``secret_key``,
    ``secure`` (False), ``region`` ("us-east-1"). Starts SeaweedFS alone (~1 s) unless attached."""
    s3 = _platform.env("s3").s3_server
    assert s3 is not None
    return s3
