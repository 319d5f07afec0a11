"""Pure rules shared by the ledgers: integer units, period starts, refusal wording, wiring.

Nothing is mocked; nothing touches the network (the HTTP ledger connects only when called).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tabular_operator.bootstrap import build_ledger
from tabular_operator.budget import (
    FileLedger,
    UnmeteredLedger,
    delta_units,
    epsilon_units,
    no_budget_message,
    period_start,
    refusal_message,
    remaining_units,
)
from tabular_operator.ledger_http import HttpLedger
from tabular_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 12, 15, 30, 5, 7, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("period", "now", "start"),
    [
        ("none", NOW, None),
        ("daily", NOW, datetime(2025, 3, 12, tzinfo=UTC)),
        ("weekly", NOW, datetime(2025, 3, 10, tzinfo=UTC)),
        ("weekly", datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC)),
        ("weekly", datetime(2025, 3, 16, 23, 59, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC)),
        ("monthly", NOW, datetime(2025, 3, 1, tzinfo=UTC)),
        ("yearly", NOW, datetime(2025, 1, 1, tzinfo=UTC)),
        # 01:30 at UTC+2 is still the previous UTC day
        (
            "daily",
            datetime(2025, 3, 12, 1, 30, tzinfo=timezone(timedelta(hours=2))),
            datetime(2025, 3, 11, tzinfo=UTC),
        ),
    ],
    ids=["none", "daily", "weekly", "monday", "sunday-night", "monthly", "yearly", "utc"],
)
def test_period_start_is_the_utc_calendar_start(
    period: str, now: datetime, start: datetime | None
) -> None:
    assert period_start(period, now) == start


def test_period_start_refuses_naive_times_and_unknown_periods() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_start("daily", datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="unknown budget period 'hourly'"):
        period_start("hourly", NOW)


def test_integer_units_make_sums_exact() -> None:
    assert epsilon_units(0.3) * 33 == 9_900_000
    assert sum(epsilon_units(0.1) for _ in range(10)) == epsilon_units(1.0)
    assert sum(0.1 for _ in range(10)) != 1.0  # why the ledger keeps integers
    assert delta_units(1e-5) == 10_000_000 and delta_units(4e-13) == 0


def test_remaining_is_never_negative() -> None:
    assert remaining_units(10, 3, 2) == 5
    assert remaining_units(1, 3, 0) == 0  # a cap lowered below what is spent


def test_messages_say_what_was_asked_and_how_to_fix_it() -> None:
    assert (
        refusal_message(
            quantity="ε",
            requested=0.3,
            remaining=0.1,
            cap=10.0,
            where="PrivacyBudget team-budget (namespace a)",
        )
        == "requested ε 0.3 but 0.1 of 10 remains in PrivacyBudget team-budget (namespace a)"
    )
    message = no_budget_message("a", "s3://d/x.csv")
    assert "kubectl apply -n a" in message and "spec.epsilon" in message
    assert "dataset s3://d/x.csv" in message


@pytest.mark.parametrize(
    ("env", "kind", "name"),
    [
        ({}, UnmeteredLedger, "unmetered"),
        ({"ledger_file": "{tmp}/ledger.jsonl"}, FileLedger, "file"),
        (
            {"privacy_engine_url": "http://engine:8080/", "database_url": "postgresql://x/y"},
            HttpLedger,
            "privacy engine http://engine:8080/",
        ),
    ],
    ids=["nothing", "file", "engine-wins"],
)
def test_build_ledger_picks_the_configured_adapter(
    env: dict[str, str], kind: type, name: str, tmp_path: Path
) -> None:
    # Setup
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    # Run
    ledger, described = build_ledger(OperatorSettings(**env))  # type: ignore[arg-type]
    # Assert
    assert isinstance(ledger, kind)
    assert described.startswith(name)


def test_the_engine_token_is_sent_and_never_described() -> None:
    settings = OperatorSettings(
        privacy_engine_url="http://engine", privacy_engine_token="tok-1", privacy_engine_retries=1
    )  # type: ignore[arg-type]
    ledger, described = build_ledger(settings)
    assert isinstance(ledger, HttpLedger)
    assert ledger.retries == 1 and ledger._headers["Authorization"] == "Bearer tok-1"
    assert "tok-1" not in described


def test_default_budget_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUMOS_DEFAULT_BUDGET_EPSILON", "2.5")
    monkeypatch.setenv("AUMOS_DEFAULT_BUDGET_DELTA", "1e-6")
    settings = OperatorSettings()
    assert (settings.default_budget_epsilon, settings.default_budget_delta) == (2.5, 1e-6)
    assert OperatorSettings().model_copy().privacy_engine_timeout_seconds == 10.0
