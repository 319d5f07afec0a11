"""Benchmark (not a test): lifecycle mirror + outbox throughput, and relay publish latency.

Starts PostgreSQL and Kafka the way the tests do (``tests.platform.testenv.start``, stopped at
the end) and applies the migrations. Then, with ``--jobs`` jobs × 5 phases (1,000 transitions
by default), records shaped like the controller's:

* **mirror + outbox**: ``PostgresPublisher.apply`` (the mirror upsert and the outbox insert in
  one transaction) with 1, 4 and 8 writer threads, each thread walking its share of the jobs
  through the phases; transitions per second and per-transition latency. No relay runs.
* **relay latency**: the operator's wiring — the relay on its own thread, woken by each commit —
  and a consumer group already reading the topic; for each event, the time from the commit
  returning to the consumer holding it (one process, one monotonic clock). Once as fast as one
  writer commits (a burst), once paced at ``--rate`` transitions per second. A warm-up event
  goes first, so the producer's and the consumer's connections are open.

Usage::

    python benchmarks/bench_events.py [--jobs 200] [--threads 1,4,8] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import create_engine
from tests.platform import testenv

from tabular_operator.events import EVENT_TYPES
from tabular_operator.ledger_pg import engine_url, migrate
from tabular_operator.mirror_pg import PostgresPublisher, event_id
from tabular_operator.relay import OutboxRelay, topic

LIFE = ["QUEUED", "TRAINING", "GENERATING", "VALIDATING", "COMPLETE"]


def record(tenant: str, uid: str, phase: str) -> dict[str, Any]:
    """A record shaped like the one ``JobController._write`` publishes."""
    fields: dict[str, Any] = {"stage": phase.lower(), "generator": "gaussian_copula"}
    if phase == "COMPLETE":
        fields |= {"rowsGenerated": 1000, "fidelityScore": 0.9, "privacyScore": 0.8}
    return {
        "type": EVENT_TYPES[phase],
        "namespace": tenant,
        "name": f"job-{uid[:8]}",
        "uid": uid,
        "phase": phase,
        "time": "2026-12-01T12:00:00Z",
    } | fields


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def throughput(url: str, jobs: int, threads: int) -> tuple[float, list[float]]:
    """Transitions per second and per-transition seconds, ``threads`` writers."""
    engine = create_engine(engine_url(url), pool_size=threads, max_overflow=0)
    publisher = PostgresPublisher(url, engine=engine)
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    uids = [str(uuid.uuid4()) for _ in range(jobs)]
    latencies: list[float] = []

    def writer(share: list[str]) -> None:
        for phase in LIFE:
            for uid in share:
                started = time.perf_counter()
                publisher.apply(record(tenant, uid, phase))
                latencies.append(time.perf_counter() - started)

    try:
        with ThreadPoolExecutor(threads) as pool:  # warm the pool's connections
            list(pool.map(lambda _: publisher.job(tenant, "none"), range(threads)))
            started = time.perf_counter()
            list(pool.map(writer, [uids[i::threads] for i in range(threads)]))
            elapsed = time.perf_counter() - started
    finally:
        publisher.close()
    return jobs * len(LIFE) / elapsed, latencies


class Reader(threading.Thread):
    """A consumer group on the lifecycle topic; notes when each event id arrived."""

    def __init__(self, bootstrap: str, name: str) -> None:
        super().__init__(name="bench-consumer", daemon=True)
        self.bootstrap, self.name = bootstrap, name
        self.arrived: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self.read())

    async def read(self) -> None:
        consumer = AIOKafkaConsumer(
            self.name,
            bootstrap_servers=self.bootstrap,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while not self.stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for messages in batches.values():
                    for m in messages:
                        assert m.value is not None
                        self.arrived.setdefault(json.loads(m.value)["id"], now)
        finally:
            await consumer.stop()

    def wait_for(self, ids: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not all(i in self.arrived for i in ids):
            if time.monotonic() > deadline:
                missing = sum(1 for i in ids if i not in self.arrived)
                raise TimeoutError(f"{missing} of {len(ids)} events never arrived")
            time.sleep(0.01)


def latency(url: str, bootstrap: str, jobs: int, rate: float | None) -> list[float]:
    """Commit → consumer seconds per event; ``rate`` None: as fast as one writer commits."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}.aumos.tabular"
    relay = OutboxRelay(url, bootstrap, topic_prefix=prefix)
    publisher = PostgresPublisher(url, on_commit=relay.wake)
    reader = Reader(bootstrap, topic(prefix))
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    relay.start()
    try:
        warm = str(uuid.uuid4())
        publisher.apply(record(tenant, warm, "QUEUED"))
        while relay.unsent(tenant):  # the topic exists once the warm-up event is sent
            time.sleep(0.01)
        reader.start()
        reader.wait_for([str(event_id(warm, "QUEUED"))], timeout=60)
        committed: dict[str, float] = {}
        uids = [str(uuid.uuid4()) for _ in range(jobs)]
        started = time.perf_counter()
        n = 0
        for phase in LIFE:
            for uid in uids:
                if rate is not None:
                    time.sleep(max(0.0, started + n / rate - time.perf_counter()))
                publisher.apply(record(tenant, uid, phase))
                committed[str(event_id(uid, phase))] = time.perf_counter()
                n += 1
        reader.wait_for(list(committed))
    finally:
        reader.stop.set()
        relay.close()
        publisher.close()
    return [reader.arrived[i] - t for i, t in committed.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs × 5 phases = transitions")
    parser.add_argument("--threads", default="1,4,8")
    parser.add_argument("--rate", type=float, default=100.0, help="paced run, transitions/s")
    args = parser.parse_args()
    # A new topic is unknown to the consumer's first metadata: a warning worth nothing here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    state = Path(tempfile.mkdtemp(prefix="aumos-bench-events-"))
    state.chmod(0o755)  # postgres runs as its own user when we are root
    env = testenv.start(["postgres", "kafka"], state)
    try:
        assert env.database_url is not None and env.kafka_bootstrap is not None
        migrate(env.database_url)
        total = args.jobs * len(LIFE)
        print(
            f"lifecycle events: PostgreSQL + Kafka, {os.cpu_count()} CPUs, "
            f"{args.jobs} jobs x {len(LIFE)} phases = {total} transitions per row"
        )
        print("mirror + outbox (one transaction per transition, no relay)")
        print(f"{'threads':>9} {'trans/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
        for threads in (int(t) for t in args.threads.split(",")):
            rate, lat = throughput(env.database_url, args.jobs, threads)
            print(
                f"{threads:>9} {rate:>9.0f} {quantile(lat, 0.50) * 1e3:>8.2f} "
                f"{quantile(lat, 0.95) * 1e3:>8.2f} {quantile(lat, 0.99) * 1e3:>8.2f}"
            )
        print("relay: commit -> readable by a consumer group")
        print(f"{'writer':>22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for label, pace in (("burst (1 thread)", None), (f"paced {args.rate:g}/s", args.rate)):
            lat = latency(env.database_url, env.kafka_bootstrap, args.jobs, pace)
            print(
                f"{label:>22} {quantile(lat, 0.50) * 1e3:>8.1f} "
                f"{quantile(lat, 0.95) * 1e3:>8.1f} {max(lat) * 1e3:>8.1f}"
            )
    finally:
        testenv.stop(state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
