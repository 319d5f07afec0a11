"""The ε ledger of an external privacy engine, over HTTP (DESIGN §4; ADR 0005).

For deployments that already run a privacy engine: the operator asks it, the engine keeps the
book and the caps. The contract (JSON over HTTP, ``Authorization: Bearer <token>`` when a
token is configured; camelCase fields):

``POST {url}/api/v1/privacy/budget/allocate``
    body ``{"tenant", "dataset", "epsilon", "delta", "key"}`` (``key`` = the job uid, also
    sent as the ``Idempotency-Key`` header). The engine must answer a repeated key with the
    allocation it made the first time — this is what makes retrying safe.
    ``2xx {"granted": true, "allocationId": "…"}``: granted.
    ``409`` (any body) or ``2xx {"granted": false}``: refused; ``message`` (or ``detail``)
    says why and is shown to the user as is.
``POST {url}/api/v1/privacy/budget/consume``
    body ``{"allocationId", "epsilon"}``: charge ``epsilon`` (≤ the allocation) once; a repeat
    must be answered ``2xx``. ``409``: not allowed (e.g. after release).
``POST {url}/api/v1/privacy/budget/release``
    body ``{"allocationId"}``: return a never-consumed allocation; a repeat ``2xx``; ``409``
    after consume.

Any other ``4xx`` is a :class:`~tabular_operator.budget.BudgetError` at once (a request the
engine will never accept, e.g. a bad token). Connection errors, timeouts, ``429`` and ``5xx``
are retried (``retries`` times, exponential back-off from ``backoff`` seconds); when every
try failed, :class:`~tabular_operator.budget.BudgetUnavailable` names the engine and the last
error. Caps live in the engine: :meth:`HttpLedger.set_cap` and :meth:`HttpLedger.remove_cap`
change nothing here, and :meth:`HttpLedger.summary` knows nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tabular_operator.budget import (
    BudgetCap,
    BudgetError,
    BudgetRefused,
    BudgetSummary,
    BudgetUnavailable,
)

API = "/api/v1/privacy/budget"


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class AllocateResponse(_Body):
    """The engine's answer to ``allocate``."""

    granted: bool = True
    allocation_id: str | None = Field(default=None, alias="allocationId", min_length=1)
    message: str | None = None
    detail: str | None = None

    @model_validator(mode="after")
    def _granted_has_an_id(self) -> AllocateResponse:
        if self.granted and not self.allocation_id:
            raise ValueError("a granted allocation must carry allocationId")
        return self


class ErrorBody(_Body):
    """What the engine says when it refuses or fails (``message`` or ``detail``)."""

    message: str | None = None
    detail: str | None = None


class _Retry(Exception):
    """A try that may succeed if repeated (connection error, timeout, 429, 5xx)."""


class HttpLedger:
    """The :class:`~tabular_operator.budget.Ledger` port over an external privacy engine.

    Args:
        url: the engine's base URL (``https://privacy.example``).
        token: a bearer token, or ``None``.
        timeout: seconds per request (connect, read, write, pool each).
        retries: further tries after a retryable failure.
        backoff: the first wait between tries; it doubles, up to 5 s.
        transport: an httpx transport (default: the network).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._transport = transport
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    async def _post(
        self, op: str, body: dict[str, Any], idempotency_key: str
    ) -> tuple[int, dict[str, Any]]:
        """POST with retries; the status and JSON object of the first non-retryable answer."""
        url = f"{self.url}{API}/{op}"
        headers = self._headers | {"Idempotency-Key": idempotency_key}
        last = "no attempt"
        # One client per call: a handful of calls per job, and no client outlives its loop.
        async with httpx.AsyncClient(
            timeout=self.timeout, transport=self._transport, headers=headers
        ) as client:
            for attempt in range(self.retries + 1):
                if attempt:
                    await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), 5.0))
                try:
                    return await self._try(client, url, body)
                except _Retry as exc:
                    last = str(exc)
        raise BudgetUnavailable(
            f"privacy engine {self.url} unreachable for {op} after {self.retries + 1} tries: {last}"
        )

    @staticmethod
    async def _try(
        client: httpx.AsyncClient, url: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        try:
            response = await client.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {"message": response.text[:500]}
        if not isinstance(data, dict):
            raise BudgetError(f"privacy engine answered {url} with a non-object JSON body")
        return response.status_code, data

    @staticmethod
    def _say(data: dict[str, Any], fallback: str) -> str:
        try:
            body = ErrorBody.model_validate(data)
        except ValidationError:
            return fallback
        return body.message or body.detail or fallback

    def _check(self, op: str, status: int, data: dict[str, Any]) -> None:
        if status == 409:
            raise BudgetError(self._say(data, f"privacy engine refused {op} (HTTP 409)"))
        if not 200 <= status < 300:
            raise BudgetError(
                f"privacy engine rejected {op} with HTTP {status}: " + self._say(data, "no message")
            )

    async def allocate(
        self, tenant: str, dataset: str | None, epsilon: float, delta: float, key: str
    ) -> str:
        """Ask the engine to reserve ε/δ; the same id for the same ``key``.

        Raises:
            BudgetRefused: the engine refused (409, or ``granted: false``), with its message.
            BudgetUnavailable: the engine could not be reached after the retries.
            BudgetError: any other rejection, or an answer outside the contract.
        """
        body = {
            "tenant": tenant,
            "dataset": dataset,
            "epsilon": epsilon,
            "delta": delta,
            "key": key,
        }
        status, data = await self._post("allocate", body, key)
        if status == 409:
            raise BudgetRefused(self._say(data, "the privacy engine refused the allocation"))
        self._check("allocate", status, data)
        try:
            answer = AllocateResponse.model_validate(data)
        except ValidationError as exc:
            raise BudgetError(
                f"privacy engine answered allocate outside the contract: {exc.errors()[0]['msg']}"
            ) from exc
        if not answer.granted:
            raise BudgetRefused(
                answer.message or answer.detail or "the privacy engine refused the allocation"
            )
        assert answer.allocation_id is not None  # the validator's guarantee
        return answer.allocation_id

    async def consume(self, allocation_id: str, epsilon: float) -> None:
        """Charge ``epsilon`` once (the engine caps it at the allocation).

        Raises:
            BudgetError: the engine would not (409: e.g. after release); or unreachable.
        """
        body = {"allocationId": allocation_id, "epsilon": epsilon}
        self._check("consume", *await self._post("consume", body, allocation_id))

    async def release(self, allocation_id: str) -> None:
        """Return an allocation that was never consumed.

        Raises:
            BudgetError: the engine would not (409: after consume); or unreachable.
        """
        body = {"allocationId": allocation_id}
        self._check("release", *await self._post("release", body, allocation_id))

    async def set_cap(self, cap: BudgetCap) -> BudgetSummary:
        """Caps live in the engine: nothing changes; the cap as declared, nothing counted."""
        return BudgetSummary(cap.epsilon, 0.0, 0.0, cap.epsilon, 0)

    async def remove_cap(self, tenant: str, name: str) -> None:
        """Caps live in the engine: nothing to forget here."""

    async def summary(self, tenant: str, name: str) -> BudgetSummary | None:
        """Unknown here: the engine keeps the book."""
        return None
