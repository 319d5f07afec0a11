"""The HTTP ledger against a real HTTP server that implements the privacy-engine contract.

Real: httpx over TCP to an aiohttp server on 127.0.0.1 (its own thread and event loop), which
keeps an in-memory book with one ε cap per tenant. Not real: the privacy engine itself — the
server is the smallest honest implementation of the contract in ``ledger_http``'s docstring,
with switches to fail (HTTP 500) or to stop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tabular_operator.budget import BudgetError, BudgetRefused, BudgetUnavailable
from tabular_operator.ledger_http import HttpLedger
from tests.platform.procs import free_port

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


@dataclass
class Book:
    """The engine's book: caps, allocations by key, and a fault switch."""

    caps: dict[str, float] = field(default_factory=dict)
    by_key: dict[tuple[str, str], str] = field(default_factory=dict)
    allocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: int = 0
    refuse_with_200: bool = False
    requests: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def used(self, tenant: str) -> float:
        return sum(
            a["consumed"] if a["state"] == "consumed" else a["epsilon"]
            for a in self.allocations.values()
            if a["tenant"] == tenant and a["state"] != "released"
        )


class Engine:
    """aiohttp server in a thread."""

    def __init__(self) -> None:
        self.book = Book()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/privacy/budget/{op}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        book, op = self.book, request.match_info["op"]
        book.requests.append(
            (op, request.headers.get("Authorization"), request.headers.get("Idempotency-Key"))
        )
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "bad token"}, status=401)
        if book.fail_next > 0:
            book.fail_next -= 1
            return web.Response(status=500, text="engine hiccup")
        body = await request.json()
        if op == "allocate":
            tenant, key, eps = body["tenant"], body["key"], float(body["epsilon"])
            if (tenant, key) in book.by_key:
                return web.json_response(
                    {"granted": True, "allocationId": book.by_key[tenant, key]}
                )
            cap = book.caps.get(tenant, 0.0)
            if book.used(tenant) + eps > cap + 1e-9:
                left = max(cap - book.used(tenant), 0)
                msg = f"requested ε {eps:g} but {left:g} of {cap:g} remains"
                if book.refuse_with_200:
                    return web.json_response({"granted": False, "message": msg})
                return web.json_response({"granted": False, "message": msg}, status=409)
            allocation_id = f"pe-{uuid.uuid4().hex}"
            book.by_key[tenant, key] = allocation_id
            book.allocations[allocation_id] = {
                "tenant": tenant,
                "epsilon": eps,
                "state": "allocated",
                "consumed": 0.0,
            }
            return web.json_response({"granted": True, "allocationId": allocation_id}, status=201)
        allocation = book.allocations.get(body.get("allocationId", ""))
        if allocation is None:
            return web.json_response({"message": "unknown allocation"}, status=404)
        if op == "consume":
            if allocation["state"] == "released":
                return web.json_response({"message": "consume after release"}, status=409)
            if allocation["state"] == "allocated":
                allocation["state"] = "consumed"
                allocation["consumed"] = min(float(body["epsilon"]), allocation["epsilon"])
            return web.json_response({"allocationId": body["allocationId"], "state": "consumed"})
        if op == "release":
            if allocation["state"] == "consumed":
                return web.json_response({"message": "release after consume"}, status=409)
            allocation["state"] = "released"
            return web.json_response({"allocationId": body["allocationId"], "state": "released"})
        return web.json_response({"message": f"no such operation {op}"}, status=404)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = Engine()
    engine.start()
    yield engine
    engine.close()


def ledger_for(engine: Engine, **kwargs: Any) -> HttpLedger:
    options: dict[str, Any] = {"token": TOKEN, "timeout": 2.0, "retries": 3, "backoff": 0.05}
    return HttpLedger(engine.url, **(options | kwargs))


def test_allocate_is_idempotent_and_consume_release_follow_the_contract(engine: Engine) -> None:
    # Setup
    engine.book.caps["a"] = 1.0
    ledger = ledger_for(engine)

    async def scenario() -> dict[str, object]:
        first = await ledger.allocate("a", "s3://d/x.csv", 0.4, 1e-6, "job-1")
        again = await ledger.allocate("a", "s3://d/x.csv", 0.4, 1e-6, "job-1")
        await ledger.consume(first, 0.3)
        await ledger.consume(first, 0.3)
        second = await ledger.allocate("a", None, 0.2, 1e-6, "job-2")
        await ledger.release(second)
        await ledger.release(second)
        out: dict[str, object] = {"first": first, "again": again}
        for name, call in {
            "release_after_consume": ledger.release(first),
            "consume_after_release": ledger.consume(second, 0.1),
            "consume_unknown": ledger.consume("pe-nope", 0.1),
        }.items():
            try:
                await call
            except BudgetError as exc:
                out[name] = exc
        return out

    # Run
    out = asyncio.run(scenario())
    # Assert
    assert out["first"] == out["again"]
    assert engine.book.used("a") == pytest.approx(0.3)
    assert "release after consume" in str(out["release_after_consume"])
    assert "consume after release" in str(out["consume_after_release"])
    assert "HTTP 404" in str(out["consume_unknown"])
    assert not any(isinstance(e, BudgetRefused | BudgetUnavailable) for e in out.values())
    assert {auth for _, auth, _ in engine.book.requests} == {f"Bearer {TOKEN}"}
    assert engine.book.requests[0] == ("allocate", f"Bearer {TOKEN}", "job-1")


@pytest.mark.parametrize("with_200", [False, True], ids=["http-409", "granted-false"])
def test_a_refusal_is_budget_refused_with_the_engines_message(
    engine: Engine, with_200: bool
) -> None:
    # Setup
    engine.book.caps["a"] = 10.0
    engine.book.refuse_with_200 = with_200
    ledger = ledger_for(engine)

    async def scenario() -> None:
        await ledger.allocate("a", None, 9.9, 1e-6, "j1")
        await ledger.allocate("a", None, 0.3, 1e-6, "j2")

    # Run
    with pytest.raises(BudgetRefused) as refused:
        asyncio.run(scenario())
    # Assert
    assert str(refused.value) == "requested ε 0.3 but 0.1 of 10 remains"
    assert len(engine.book.allocations) == 1


def test_two_500s_then_success_is_retried(engine: Engine) -> None:
    # Setup
    engine.book.caps["a"] = 1.0
    engine.book.fail_next = 2
    ledger = ledger_for(engine)
    # Run
    allocation_id = asyncio.run(ledger.allocate("a", None, 0.5, 1e-6, "job-1"))
    # Assert
    assert allocation_id in engine.book.allocations
    assert [op for op, _, _ in engine.book.requests] == ["allocate"] * 3


def test_too_many_500s_is_unavailable(engine: Engine) -> None:
    engine.book.caps["a"] = 1.0
    engine.book.fail_next = 10
    with pytest.raises(BudgetUnavailable, match="after 3 tries: HTTP 500: engine hiccup"):
        asyncio.run(ledger_for(engine, retries=2).allocate("a", None, 0.5, 1e-6, "job-1"))
    assert engine.book.allocations == {}


def test_a_bad_token_fails_at_once_without_retries(engine: Engine) -> None:
    with pytest.raises(BudgetError, match="HTTP 401: bad token") as failed:
        asyncio.run(ledger_for(engine, token="wrong").allocate("a", None, 0.5, 1e-6, "j"))
    assert not isinstance(failed.value, BudgetRefused | BudgetUnavailable)
    assert len(engine.book.requests) == 1


def test_a_stopped_engine_is_budget_error_within_the_timeout_budget(engine: Engine) -> None:
    # Setup
    engine.stop()
    ledger = ledger_for(engine, timeout=1.0, retries=3, backoff=0.05)
    # Run
    started = time.monotonic()
    with pytest.raises(BudgetUnavailable) as unavailable:
        asyncio.run(ledger.allocate("a", None, 0.5, 1e-6, "job-1"))
    elapsed = time.monotonic() - started
    # Assert: at most (retries + 1) timeouts plus the back-off waits
    assert elapsed < 4 * 1.0 + 0.05 + 0.1 + 0.2 + 1.0
    assert isinstance(unavailable.value, BudgetError)
    assert f"privacy engine {engine.url} unreachable for allocate after 4 tries" in str(
        unavailable.value
    )


def test_an_engine_that_never_answers_times_out_per_try() -> None:
    # Setup: a socket that listens (connections queue in the backlog) and never answers
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        ledger = HttpLedger(url, timeout=0.3, retries=1, backoff=0.05)
        # Run
        started = time.monotonic()
        with pytest.raises(BudgetUnavailable, match="after 2 tries: timed out"):
            asyncio.run(ledger.allocate("a", None, 0.5, 1e-6, "job-1"))
        elapsed = time.monotonic() - started
    # Assert
    assert 0.6 <= elapsed < 2.0
