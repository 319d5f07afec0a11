"""The outbox relay killed 50 times while transitions are being committed (PostgreSQL + Kafka).

Real: PostgreSQL, Kafka 4.1, the relay in a process of its own killed with SIGKILL, aiokafka
(the relay's producer, and a consumer group reading the topic), the mirror writing the outbox.
Not real: the controller — a writer thread commits transitions the way it would, and rolls
back others (doomed new jobs, and doomed next phases of real jobs) that must never be seen.

One launcher process imports the relay once and forks a relay per round, so 50 rounds do not
pay 50 interpreter starts. Two kinds of death alternate:

* ``armed``: the crash point ``relay-after-send`` kills the relay right after the broker
  acknowledged a batch and before it is marked sent — the at-least-once case, every time;
* ``plain``: the launcher SIGKILLs the relay after a random 0.05–0.6 s: before, during or after
  a fetch, a send or a mark, wherever it happens to be.

Then a clean relay drains what is left, a consumer group reads the whole topic, and: every
committed event arrived at least once, no id stands for two transitions, after dedup by id
each job's events are 1, 2, 3 … in order, and nothing of a rolled-back transaction arrived.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from tabular_operator.ledger_pg import migrate
from tabular_operator.mirror_pg import PostgresPublisher, event_id
from tabular_operator.relay import OutboxRelay, topic
from tests.integration.test_relay_kafka import dedupe, new_group, per_job, record

pytestmark = pytest.mark.integration

LIFE = ["QUEUED", "TRAINING", "GENERATING", "VALIDATING", "COMPLETE"]
ROUNDS = 50

# Reads "armed <timeout>" or "plain <delay>" per line; answers crashed|killed|timeout|exited.
LAUNCHER = r"""
import asyncio, os, signal, sys, time
from tabular_operator.faults import Faults
from tabular_operator.relay import OutboxRelay

url, servers, prefix = sys.argv[1:4]
for line in sys.stdin:
    mode, seconds = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            faults = Faults("relay-after-send" if mode == "armed" else "")
            relay = OutboxRelay(url, servers, topic_prefix=prefix, poll_interval=0.02,
                                faults=faults)
            asyncio.run(relay.run())
        finally:
            os._exit(3)
    deadline = time.monotonic() + float(seconds)
    status = 0
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.005)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print("killed" if mode == "plain" else "timeout", flush=True)
        continue
    dead = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    print("crashed" if mode == "armed" and dead else "exited", flush=True)
"""


class Writer(threading.Thread):
    """Commits transitions of interleaved jobs until stopped; rolls back some on purpose."""

    def __init__(self, publisher: PostgresPublisher, tenant: str, seed: int) -> None:
        super().__init__(name="transition-writer", daemon=True)
        self.publisher, self.tenant = publisher, tenant
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.committed: dict[str, int] = {}  # event id -> seq
        self.jobs: dict[str, int] = {}  # uid -> transitions committed
        self.doomed_uids: set[str] = set()
        self.rolled_back = 0
        self.error: BaseException | None = None

    def roll_back(self, uid: str, phase: str) -> None:
        with self.publisher.engine.connect() as conn:
            transaction = conn.begin()
            assert self.publisher.apply_on(conn, record(self.tenant, uid, phase, stage="doomed"))
            transaction.rollback()
        self.rolled_back += 1

    def run(self) -> None:
        active = [str(uuid.uuid4()) for _ in range(8)]
        try:
            while not self.stop.is_set():
                uid = self.rng.choice(active)
                done = self.jobs.get(uid, 0)
                phase = LIFE[done]
                if self.rng.random() < 0.2:  # the next phase of a real job, rolled back
                    self.roll_back(uid, phase)
                if self.rng.random() < 0.05:  # a job that never existed
                    doomed = str(uuid.uuid4())
                    self.doomed_uids.add(doomed)
                    self.roll_back(doomed, "QUEUED")
                seq = self.publisher.apply(record(self.tenant, uid, phase, stage="ok"))
                assert seq == done + 1
                self.committed[str(event_id(uid, phase))] = seq
                self.jobs[uid] = seq
                if phase == "COMPLETE":
                    active[active.index(uid)] = str(uuid.uuid4())
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def read_topic(bootstrap: str, name: str) -> list[dict[str, Any]]:
    """Every record of the topic, read by a fresh consumer group up to the end offsets."""

    async def read() -> list[dict[str, Any]]:
        consumer = new_group(bootstrap, name)
        await consumer.start()
        events: list[dict[str, Any]] = []
        try:
            partitions = [
                TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()
            ]
            ends = await consumer.end_offsets(partitions)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=250, max_records=1000)
                for messages in batches.values():
                    for m in messages:
                        assert m.value is not None and m.key is not None
                        event = json.loads(m.value)
                        assert m.key.decode() == event["data"]["uid"]
                        events.append(event)
                positions = [await consumer.position(tp) for tp in ends]
                if all(pos >= ends[tp] for pos, tp in zip(positions, ends, strict=True)):
                    break
        finally:
            await consumer.stop()
        return events

    return asyncio.run(read())


def test_a_relay_killed_50_times_loses_reorders_and_invents_nothing(
    database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Setup: a writer committing transitions, and a launcher of relay processes
    migrate(database_url)
    tenant, prefix = f"t-{uuid.uuid4().hex[:10]}", f"faults-{uuid.uuid4().hex[:8]}.aumos.tabular"
    publisher = PostgresPublisher(database_url)
    writer = Writer(publisher, tenant, seed=11)
    rng = random.Random(7)
    log = (tmp_path / "launcher.log").open("w")
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, database_url, kafka_bootstrap, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert launcher.stdin is not None and launcher.stdout is not None
    outcomes: list[str] = []
    writer.start()
    try:
        # Run: 50 relays, each killed; the writer keeps committing meanwhile
        for i in range(ROUNDS):
            command = "armed 10" if i % 2 == 0 else f"plain {rng.uniform(0.05, 0.6):.3f}"
            launcher.stdin.write(command + "\n")
            launcher.stdin.flush()
            outcomes.append(launcher.stdout.readline().strip())
        writer.stop.set()
        writer.join(10)
        launcher.stdin.close()
        launcher.wait(10)

        # ... and a clean relay delivers what is left
        final = OutboxRelay(database_url, kafka_bootstrap, topic_prefix=prefix)
        try:

            async def drain() -> None:
                while await final.drain_once():
                    pass

            asyncio.run(drain())
            assert final.unsent(tenant) == 0
        finally:
            final.close()
    finally:
        writer.stop.set()
        if launcher.poll() is None:
            launcher.kill()
        log.close()
        publisher.close()
    assert writer.error is None, writer.error
    events = [
        e for e in read_topic(kafka_bootstrap, topic(prefix)) if e["data"]["tenant"] == tenant
    ]

    # Assert: every relay died where it was meant to
    assert Counter(outcomes) == {"crashed": ROUNDS // 2, "killed": ROUNDS - ROUNDS // 2}, (
        f"{Counter(outcomes)}; launcher log: {(tmp_path / 'launcher.log').read_text()[-2000:]}"
    )
    # Every committed event at least once, and nothing else (nothing rolled back)
    delivered = Counter(e["id"] for e in events)
    assert set(delivered) == set(writer.committed)
    assert not {e["data"]["uid"] for e in events} & writer.doomed_uids
    assert all(e["data"]["stage"] == "ok" for e in events)
    # The kills landed between send and mark: each armed death re-sent at least one event
    assert sum(delivered.values()) - len(delivered) >= ROUNDS // 2
    # A redelivery is the same event; one id is one transition
    by_id: dict[str, dict[str, Any]] = {}
    for e in events:
        assert by_id.setdefault(e["id"], e) == e
    unique = dedupe(events)
    assert len({(e["data"]["uid"], e["data"]["seq"]) for e in unique}) == len(unique)
    # Per job, after dedup by id: 1, 2, 3 … in order, as many as were committed
    assert per_job(unique) == {uid: list(range(1, n + 1)) for uid, n in writer.jobs.items()}
    assert writer.rolled_back > 0 and len(writer.committed) > 100
