"""Benchmark (not a test): PostgreSQL ledger allocations per second and allocate latency.

Starts PostgreSQL alone the way the tests do (``tests.platform.testenv.start(["postgres"], …)``,
stopped at the end), applies the migrations, then for 1, 8 and 64 concurrent clients runs
``--allocations`` allocations (each a new job key, all granted: the cap is large) and prints
allocations per second and p50/p99 allocate latency. Two shapes:

* ``one tenant``: every client allocates in the same namespace — the worst case, since one
  tenant's allocations are serialised (advisory lock + cap row lock, ADR 0005);
* ``tenant/client``: each client in its own namespace (with its own cap).

A client is an asyncio task calling ``allocate`` in a loop; the ledger's connection pool and
worker threads are sized to the client count.

Usage::

    python benchmarks/bench_budget.py [--allocations 2000] [--clients 1,8,64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tests.platform import testenv

from tabular_operator.budget import BudgetCap
from tabular_operator.ledger_pg import PostgresLedger, migrate


async def run_level(
    url: str, clients: int, total: int, *, shared: bool
) -> tuple[float, list[float]]:
    ledger = PostgresLedger(url, pool_size=clients)
    run = uuid.uuid4().hex[:8]
    tenants = [f"bench-{run}"] if shared else [f"bench-{run}-{i}" for i in range(clients)]
    try:
        for tenant in tenants:
            await ledger.set_cap(BudgetCap(tenant, "bench", 1e9, 0.5))
        # Warm the pool (connections are opened lazily).
        await asyncio.gather(
            *(ledger.summary(tenants[i % len(tenants)], "bench") for i in range(clients))
        )
        latencies: list[float] = []
        per_client = total // clients

        async def client(i: int) -> None:
            tenant = tenants[i % len(tenants)]
            for j in range(per_client):
                started = time.perf_counter()
                await ledger.allocate(tenant, None, 0.01, 1e-9, f"c{i}-j{j}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
        return per_client * clients / elapsed, latencies
    finally:
        ledger.close()


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocations", type=int, default=2000, help="per level and shape")
    parser.add_argument("--clients", default="1,8,64")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    state = Path(tempfile.mkdtemp(prefix="aumos-bench-budget-"))
    state.chmod(0o755)  # postgres runs as its own user when we are root
    env = testenv.start(["postgres"], state)
    try:
        assert env.database_url is not None
        migrate(env.database_url)
        print(f"PostgreSQL ledger, {os.cpu_count()} CPUs, {args.allocations} allocations per row")
        print(f"{'shape':<14} {'clients':>7} {'alloc/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for shared in (True, False):
            for clients in levels:
                rate, lat = asyncio.run(
                    run_level(env.database_url, clients, args.allocations, shared=shared)
                )
                shape = "one tenant" if shared else "tenant/client"
                print(
                    f"{shape:<14} {clients:>7} {rate:>9.0f} "
                    f"{quantile(lat, 0.50) * 1e3:>8.2f} {quantile(lat, 0.99) * 1e3:>8.2f}"
                )
    finally:
        testenv.stop(state)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
