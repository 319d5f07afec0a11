"""The data plane with the operator on the real control plane (issue: data plane; docs/operator.md).

Real parts: kube-apiserver and controllers, node-agent pods running ``tabular-runner stage``,
SeaweedFS S3, a PostgreSQL of this module's own (so that it can be stopped for two minutes
without disturbing other modules), the platform's Kafka 4.1 broker, and the operator process
with the PostgreSQL mirror, the outbox relay and the PostgreSQL ledger.

* A job's whole life is in ``tab_generation_jobs`` and on the topic, in order, read by a real
  consumer group; its outputs are downloadable through the Secret ``<job>-download`` only,
  and the refresh annotation renews the URLs.
* A canary placed in the job's source Secret appears nowhere: status, annotations, Events,
  the operator's log, the mirror, the outbox or the Kafka payloads.
* PostgreSQL stopped for two minutes while 20 jobs move: their status keeps moving, and once
  it is back every transition is mirrored and published; 0 lost.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.operator_harness import (
    Cluster,
    OperatorProcess,
    penguins_job,
    wait_for,
    wait_phase,
)
from tests.integration.test_relay_kafka import consume, dedupe, per_job
from tests.platform import procs, services

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

minio = pytest.importorskip("minio")

LIFE = ["QUEUED", "TRAINING", "GENERATING", "VALIDATING", "COMPLETE"]
OUTAGE_S = float(os.environ.get("AUMOS_E2E_PG_OUTAGE_S", "120"))
"""How long PostgreSQL stays down (the issue's two minutes; shorter only to debug the test)."""


class StoppablePostgres:
    """A PostgreSQL of this module: stop it (fast shutdown) and start it again, same port."""

    def __init__(self, root: Path) -> None:
        self.group = procs.ProcessGroup(root / "state")
        self.server = services.start_postgres(self.group, root / "pg")
        self.data = root / "pg" / "data"

    def stop(self) -> None:
        pid = self.group.recorded()["postgres"]
        os.killpg(pid, signal.SIGINT)  # fast shutdown: clients are disconnected
        wait_for("PostgreSQL to stop", lambda: not procs._group_alive(pid), timeout=30)

    def start(self) -> None:
        # postmaster.opts holds the command line of the last run (what pg_ctl restart uses).
        cmd = shlex.split((self.data / "postmaster.opts").read_text())
        user = "postgres" if os.geteuid() == 0 else None
        proc = self.group.start("postgres", cmd, user=user, cwd=self.data.parent)
        self.group.wait_ready("postgres", proc, self.ready, timeout=60)

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.server.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.server.dsn, row_factory=psycopg.rows.dict_row) as conn:
            return list(conn.execute(sql, args).fetchall())

    def close(self) -> None:
        self.group.stop_all()


@pytest.fixture(scope="module")
def plane(
    cluster: Cluster,
    kubeconfig: Path,
    s3_server: Any,
    datasets: dict[str, str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, OperatorProcess, StoppablePostgres, str]]:
    # Not under pytest's tmp dir: postgres runs as its own user and must traverse the path.
    root = Path(tempfile.mkdtemp(prefix="aumos-dataplane-pg-"))
    root.chmod(0o755)
    pg = StoppablePostgres(root)
    prefix = f"aumos.e2e{uuid.uuid4().hex[:6]}"
    ns = cluster.namespace("plane")
    cluster.secret(
        ns, "datasets-s3", {"accessKey": s3_server.access_key, "secretKey": s3_server.secret_key}
    )
    op = OperatorProcess(
        kubeconfig,
        s3_server,
        tmp_path_factory.mktemp("dataplane-operator"),
        env={
            "AUMOS_DATABASE_URL": pg.server.url,
            "AUMOS_LEDGER_FILE": "",
            "AUMOS_KAFKA_ENABLED": "true",
            "AUMOS_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "AUMOS_KAFKA_TOPIC_PREFIX": prefix,
        },
    )
    op.start()
    yield ns, op, pg, prefix
    op.stop()
    pg.close()
    shutil.rmtree(root, ignore_errors=True)


CANARY = f"canary-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def finished(
    cluster: Cluster, plane: tuple[str, OperatorProcess, StoppablePostgres, str], s3_server: Any
) -> dict[str, Any]:
    """One penguins job whose source Secret carries a canary, run to COMPLETE."""
    ns, op, _, _ = plane
    cluster.secret(
        ns,
        "source-creds",
        {
            "accessKey": s3_server.access_key,
            "secretKey": s3_server.secret_key,
            "canary": CANARY,
        },
    )
    job = penguins_job("life")
    job["spec"]["source"]["secretRef"] = {"name": "source-creds"}
    job["spec"]["output"] = {"format": "csv", "downloadTtlSeconds": 900}
    cluster.create(ns, job)
    obj = wait_phase(cluster, ns, "life", ["COMPLETE", "FAILED"], timeout=400, operator=op)
    assert obj["status"]["phase"] == "COMPLETE", obj["status"].get("message")
    return obj


def test_a_jobs_life_is_mirrored_and_published_in_order(
    cluster: Cluster,
    plane: tuple[str, OperatorProcess, StoppablePostgres, str],
    finished: dict[str, Any],
    kafka_bootstrap: str,
) -> None:
    ns, op, pg, prefix = plane
    uid, status = finished["metadata"]["uid"], finished["status"]

    def mirrored() -> dict[str, Any] | None:
        rows = pg.rows(
            "SELECT * FROM tab_generation_jobs WHERE tenant_id = %s AND uid = %s", ns, uid
        )
        return rows[0] if rows and rows[0]["phase"] == "COMPLETE" else None

    row = wait_for("the mirror row", mirrored, timeout=30, operator=op)
    assert row["name"] == "life" and row["seq"] == len(LIFE)
    assert row["rows"] == status["rowsGenerated"] == 300
    assert row["fidelity_score"] == pytest.approx(status["fidelityScore"])
    assert row["generator"] == status["generator"]
    assert row["training_time_s"] == pytest.approx(status["trainingTimeS"])
    assert row["output_uri"] == status["output"]["uri"]
    # The status keeps nothing for the mirror once it has everything.
    wait_for(
        "status.mirror to clear",
        lambda: "mirror" not in (cluster.get(ns, "life") or {}).get("status", {}),
        timeout=30,
    )

    events = dedupe(consume(kafka_bootstrap, prefix, ns, expected=len(LIFE)))
    mine = [e for e in events if e["data"]["uid"] == uid]
    assert [e["data"]["phase"] for e in mine] == LIFE
    assert per_job(mine)[uid] == [1, 2, 3, 4, 5]
    assert mine[-1]["data"]["rowsGenerated"] == 300
    assert mine[-1]["type"] == "aumos.tabular.generation.job.complete"


def test_outputs_are_downloaded_through_the_secret_and_renewed_on_request(
    cluster: Cluster,
    plane: tuple[str, OperatorProcess, StoppablePostgres, str],
    finished: dict[str, Any],
    s3_client: Any,
) -> None:
    ns, op, _, _ = plane
    uid, download = finished["metadata"]["uid"], finished["status"]["download"]
    assert download["secretName"] == "life-download"
    assert {"output.csv", "report.html", "report.json"} <= set(download["files"])
    assert "model.pkl" not in download["files"] and "analysis.json" not in download["files"]
    secret = cluster.core.read_namespaced_secret("life-download", ns)
    assert secret.metadata.owner_references[0].uid == uid
    expires = secret.metadata.annotations["tabular.aumos.io/expires-at"]
    assert expires == download["expiresAt"]
    urls = {k: _b64(v) for k, v in secret.data.items()}
    assert sorted(urls) == download["files"]
    # downloadTtlSeconds 900: the URL says so.
    assert "X-Amz-Expires=900" in urls["output.csv"]
    with urllib.request.urlopen(urls["output.csv"], timeout=10) as response:
        body = response.read()
    stored = s3_client.get_object(f"aumos-tab-{ns}", f"tab-jobs/{uid}/output.csv")
    try:
        assert body == stored.read()
    finally:
        stored.close()
        stored.release_conn()
    assert body.count(b"\n") == 301  # header + 300 rows

    # A presigned URL carries its signing time to the second: ask for new ones only once
    # that second has passed, or they are the same URLs, rightly.
    signed = urllib.parse.parse_qs(urllib.parse.urlparse(urls["output.csv"]).query)
    signed_at = datetime.strptime(signed["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    while datetime.now(UTC).replace(tzinfo=None) < signed_at + timedelta(seconds=1.2):
        time.sleep(0.2)
    cluster.custom.patch_namespaced_custom_object(
        "tabular.aumos.io",
        "v1alpha1",
        ns,
        "synthesisjobs",
        "life",
        {"metadata": {"annotations": {"tabular.aumos.io/refresh-download": "r1"}}},
    )

    def renewed() -> dict[str, Any] | None:
        d = ((cluster.get(ns, "life") or {}).get("status") or {}).get("download") or {}
        return d if d.get("refreshedFor") == "r1" else None

    fresh = wait_for("the download URLs to be renewed", renewed, timeout=60, operator=op)
    after = cluster.core.read_namespaced_secret("life-download", ns)
    assert after.metadata.annotations["tabular.aumos.io/expires-at"] == fresh["expiresAt"]
    assert {k: _b64(v) for k, v in after.data.items()} != urls  # signed anew
    reasons = [e.reason for e in cluster.events(ns, "life")]
    assert "DownloadRenewed" in reasons


def _b64(value: str) -> str:
    import base64

    return base64.b64decode(value).decode()


def test_a_canary_in_the_source_secret_appears_nowhere(
    cluster: Cluster,
    plane: tuple[str, OperatorProcess, StoppablePostgres, str],
    finished: dict[str, Any],
    kafka_bootstrap: str,
    s3_server: Any,
) -> None:
    ns, op, pg, prefix = plane
    uid = finished["metadata"]["uid"]
    secrets = [CANARY, s3_server.secret_key]
    obj = cluster.get(ns, "life") or {}
    places: dict[str, str] = {
        "status": json.dumps(obj.get("status")),
        "annotations": json.dumps(obj["metadata"].get("annotations")),
        "events": json.dumps(
            [(e.reason, e.message) for e in cluster.core.list_namespaced_event(ns).items]
        ),
        "operator log": op.log.read_text(errors="replace"),
        "mirror": json.dumps(
            pg.rows("SELECT * FROM tab_generation_jobs WHERE tenant_id = %s", ns), default=str
        ),
        "outbox": json.dumps(
            pg.rows("SELECT payload FROM tab_outbox WHERE tenant_id = %s", ns), default=str
        ),
        "kafka": json.dumps(consume(kafka_bootstrap, prefix, ns, expected=len(LIFE))),
    }
    assert uid in places["kafka"] and uid in places["mirror"]  # the places were really read
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret value leaked into the {where}"
        # No URL of any kind travels outside the download Secret.
        if where != "operator log":
            assert "X-Amz-Signature" not in text, f"a presigned URL leaked into the {where}"


def test_profiles_and_schemas_are_mirrored_and_follow_edits(
    cluster: Cluster, plane: tuple[str, OperatorProcess, StoppablePostgres, str]
) -> None:
    ns, op, pg, _ = plane
    cluster.create(
        ns,
        {
            "kind": "GenerationProfile",
            "metadata": {"name": "gc"},
            "spec": {"generator": {"type": "gaussian_copula"}},
        },
    )
    cluster.create(
        ns,
        {
            "kind": "MultiTableSchema",
            "metadata": {"name": "one"},
            "spec": {
                "tables": [{"name": "t", "source": {"uri": "s3://datasets/penguins/penguins.csv"}}]
            },
        },
    )

    def row(table: str, name: str, generation: int = 1) -> dict[str, Any] | None:
        try:
            rows = pg.rows(f"SELECT * FROM {table} WHERE tenant_id = %s AND name = %s", ns, name)
        except psycopg.errors.UndefinedTable:  # the operator has not migrated yet
            return None
        return rows[0] if rows and rows[0]["generation"] >= generation else None

    profile = wait_for(
        "the profile's row", lambda: row("tab_generation_profiles", "gc"), timeout=60
    )
    assert profile["valid"] is True and profile["spec"]["generator"]["type"] == "gaussian_copula"
    schema = wait_for("the schema's row", lambda: row("tab_multi_table_schemas", "one"), timeout=60)
    assert schema["table_count"] == 1 and schema["valid"] is True
    cluster.custom.patch_namespaced_custom_object(
        "tabular.aumos.io",
        "v1alpha1",
        ns,
        "generationprofiles",
        "gc",
        {"spec": {"generator": {"type": "tvae"}}},
    )
    edited = wait_for(
        "the edit in the profile's row",
        lambda: row("tab_generation_profiles", "gc", generation=2),
        timeout=60,
        operator=op,
    )
    assert edited["spec"]["generator"]["type"] == "tvae"
    cluster.custom.delete_namespaced_custom_object(
        "tabular.aumos.io", "v1alpha1", ns, "multitableschemas", "one"
    )
    wait_for(
        "the deleted schema's row to go",
        lambda: row("tab_multi_table_schemas", "one") is None,
        timeout=60,
        operator=op,
    )


def test_postgres_down_for_two_minutes_loses_no_transition(
    cluster: Cluster,
    plane: tuple[str, OperatorProcess, StoppablePostgres, str],
    kafka_bootstrap: str,
) -> None:
    ns, op, pg, prefix = plane
    names = [f"outage-{i:02d}" for i in range(20)]
    for name in names:
        cluster.create(ns, penguins_job(name, rows=100, validation={"privacy": False}))
    wait_for(
        "the first job to start training",
        lambda: any(_phase(cluster, ns, n) not in (None, "QUEUED") for n in names),
        timeout=120,
        operator=op,
    )
    pg.stop()
    down_at = {n: _phase(cluster, ns, n) for n in names}
    time.sleep(OUTAGE_S)
    during = {n: _phase(cluster, ns, n) for n in names}
    pg.start()
    moved = [n for n in names if during[n] != down_at[n]]
    assert moved, f"no job moved while PostgreSQL was down: {during}"

    objs = {}
    for name in names:
        objs[name] = wait_phase(cluster, ns, name, ["COMPLETE", "FAILED"], timeout=600, operator=op)
        assert objs[name]["status"]["phase"] == "COMPLETE", objs[name]["status"].get("message")
    uids = {objs[n]["metadata"]["uid"] for n in names}

    def caught_up() -> bool:
        if any("mirror" in (cluster.get(ns, n) or {}).get("status", {}) for n in names):
            return False
        unsent = pg.rows(
            "SELECT count(*) AS n FROM tab_outbox WHERE tenant_id = %s AND sent_at IS NULL", ns
        )
        return bool(unsent[0]["n"] == 0)

    wait_for("the mirror and the outbox to catch up", caught_up, timeout=120, operator=op)
    rows = {
        r["uid"]: r
        for r in pg.rows("SELECT uid, phase, seq FROM tab_generation_jobs WHERE tenant_id = %s", ns)
    }
    assert {u: (rows[u]["phase"], rows[u]["seq"]) for u in uids} == {
        u: ("COMPLETE", len(LIFE)) for u in uids
    }
    outbox = pg.rows(
        "SELECT job_uid, seq FROM tab_outbox WHERE tenant_id = %s ORDER BY job_uid, seq", ns
    )
    per_uid: dict[str, list[int]] = {}
    for r in outbox:
        per_uid.setdefault(r["job_uid"], []).append(r["seq"])
    assert all(per_uid[u] == [1, 2, 3, 4, 5] for u in uids)

    total = pg.rows("SELECT count(*) AS n FROM tab_outbox WHERE tenant_id = %s", ns)[0]["n"]
    events = dedupe(consume(kafka_bootstrap, prefix, ns, expected=total))
    seqs = per_job([e for e in events if e["data"]["uid"] in uids])
    lost = {u: s for u, s in seqs.items() if s != [1, 2, 3, 4, 5]}
    assert set(seqs) == uids and not lost, f"lost or reordered: {lost}"
    print(
        f"\n{len(moved)} of 20 jobs moved during the {OUTAGE_S:.0f}s outage; "
        f"{len(events)} events after dedup, 0 lost"
    )


def _phase(cluster: Cluster, ns: str, name: str) -> str | None:
    obj = cluster.get(ns, name) or {}
    phase: str | None = (obj.get("status") or {}).get("phase")
    return phase
