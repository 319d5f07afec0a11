"""Fake identifiers and personal data: realistic, seeded, and never a real value.

The "real" PII columns are drawn from Faker (a different seed from the fakes), the real
modelled columns come from Palmer penguins; the fakes are checked with the same detector
the analysis uses, so a fake that stopped looking like its kind would fail here.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from faker import Faker
from palmerpenguins import load_penguins

from tabular_runner.analysis import analyze, detect_pii, name_tokens
from tabular_runner.pii import fake_values, regenerate_sensitive

pytestmark = pytest.mark.unit

N = 300


def _real_columns(seed: int = 21) -> dict[str, pd.Series]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = np.random.default_rng(seed)

    def with_nulls(values: list[object], share: float) -> pd.Series:
        series = pd.Series(values, dtype=object)
        series[rng.random(len(series)) < share] = None
        return series

    return {
        "email": with_nulls([fake.email() for _ in range(N)], 0.2),
        "phone": pd.Series([fake.numerify("(%##) %##-####") for _ in range(N)], name="phone"),
        "person_name": pd.Series([f"{fake.first_name()} {fake.last_name()}" for _ in range(N)]),
        "national_id": pd.Series([fake.ssn() for _ in range(N)]),
        "credit_card": pd.Series([fake.credit_card_number(card_type="visa16") for _ in range(N)]),
        "ip_address": pd.Series([fake.ipv4() for _ in range(N)]),
        "street_address": with_nulls([fake.street_address() for _ in range(N)], 0.1),
    }


@pytest.fixture(scope="module")
def real_columns() -> dict[str, pd.Series]:
    return _real_columns()


HINTS = {
    "email": "email",
    "phone": "phone",
    "person_name": "full_name",
    "national_id": "ssn",
    "credit_card": "card_number",
    "ip_address": "ip",
    "street_address": "address",
}


@pytest.mark.parametrize("kind", list(HINTS), ids=list(HINTS))
def test_fakes_look_like_their_kind_and_are_never_real(
    real_columns: dict[str, pd.Series], kind: str
) -> None:
    # Setup
    real = real_columns[kind]

    # Run
    fakes = fake_values(kind, 500, seed=1, real=real)

    # Assert
    assert len(fakes) == 500
    present = fakes.dropna().astype(str)
    assert detect_pii(present, name_tokens(HINTS[kind])) == kind
    real_set = {str(v).lower() for v in real.dropna()}
    assert not {v.lower() for v in present} & real_set
    assert fakes.isna().mean() == pytest.approx(real.isna().mean(), abs=0.01)


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        ("phone", r"\(\d{3}\) \d{3}-\d{4}"),
        ("national_id", r"\d{3}-\d{2}-\d{4}"),
        ("credit_card", r"\d{16}"),
        ("ip_address", r"\d{1,3}(\.\d{1,3}){3}"),
    ],
    ids=["phone", "national_id", "credit_card", "ip_address"],
)
def test_fakes_keep_the_real_layout(
    real_columns: dict[str, pd.Series], kind: str, pattern: str
) -> None:
    # Run
    fakes = fake_values(kind, 200, seed=4, real=real_columns[kind])

    # Assert
    assert fakes.astype(str).str.fullmatch(pattern).all()


def test_unique_real_columns_get_unique_fakes(real_columns: dict[str, pd.Series]) -> None:
    # Run
    emails = fake_values("email", 5000, seed=2, real=real_columns["email"])
    ssns = fake_values("national_id", 5000, seed=2, real=real_columns["national_id"])

    # Assert
    assert emails.dropna().is_unique
    assert ssns.is_unique


def test_seeded_and_seed_dependent(real_columns: dict[str, pd.Series]) -> None:
    # Run
    first = fake_values("email", 100, seed=9, real=real_columns["email"])
    again = fake_values("email", 100, seed=9, real=real_columns["email"])
    other = fake_values("email", 100, seed=10, real=real_columns["email"])

    # Assert
    pd.testing.assert_series_equal(first, again)
    assert not first.equals(other)


def test_collisions_with_real_values_are_drawn_again() -> None:
    # Setup: the real column holds every en_US last name but five.
    fake = Faker("en_US")
    surnames = list(fake.provider("faker.providers.person").last_names)  # type: ignore[union-attr]
    left = surnames[-5:]
    real = pd.Series(surnames[:-5], name="last_name")

    # Run
    fakes = fake_values("person_name", 400, seed=0, real=real)

    # Assert: only the five names the real column lacks can appear.
    assert set(fakes) <= set(left)
    assert len(fakes) == 400


def test_integer_card_numbers_stay_integers() -> None:
    # Setup
    fake = Faker("en_US")
    fake.seed_instance(5)
    real = pd.Series([int(fake.credit_card_number(card_type="visa16")) for _ in range(100)])

    # Run
    fakes = fake_values("credit_card", 100, seed=5, real=real)

    # Assert
    assert fakes.dtype == np.int64
    assert not set(fakes) & set(real)


ID_CASES = [
    ("integers", pd.Series(np.arange(1, 301)), r"\d+"),
    ("integers with gaps", pd.Series(np.arange(10, 3010, 10)), r"\d+"),
    ("prefixed", pd.Series([f"ORD-{i:06d}" for i in range(300)]), r"ORD-\d{6}"),
    (
        "uuid",
        pd.Series([str(Faker().uuid4()) for _ in range(300)]),
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
    ),
    (
        "codes",
        pd.Series([f"{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}{i:03d}-x" for i in range(300)]),
        r"[A-Z]{2}\d{3}-[a-z]",
    ),
]


@pytest.mark.parametrize(
    ("real", "pattern"), [c[1:] for c in ID_CASES], ids=[c[0] for c in ID_CASES]
)
def test_identifiers_are_unique_new_and_in_format(real: pd.Series, pattern: str) -> None:
    # Run
    fakes = fake_values("id", 1000, seed=3, real=real)

    # Assert
    assert len(fakes) == 1000
    assert fakes.is_unique
    assert fakes.astype(str).str.fullmatch(pattern).all()
    assert not set(fakes.astype(str)) & set(real.astype(str))
    assert fakes.dtype == real.dtype


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown fake kind"):
        fake_values("passport", 3, seed=0)


def test_regenerate_sensitive_restores_columns_in_order(
    real_columns: dict[str, pd.Series],
) -> None:
    # Setup: penguins plus an id and three PII columns, interleaved.
    penguins = load_penguins().head(N)
    real = pd.DataFrame(
        {
            "bird_id": np.arange(1, N + 1),
            "species": penguins["species"],
            "owner_email": real_columns["email"],
            "body_mass_g": penguins["body_mass_g"],
            "keeper": real_columns["person_name"],
            "island": penguins["island"],
            "ssn": real_columns["national_id"],
        }
    )
    analysis = analyze(real)
    assert analysis.modelled_columns == ["species", "body_mass_g", "island"]
    synthetic = real[analysis.modelled_columns].sample(120, random_state=0, replace=True)

    # Run
    out = regenerate_sensitive(synthetic, analysis, real, seed=8)

    # Assert
    assert list(out.columns) == list(real.columns)
    assert len(out) == 120
    pd.testing.assert_frame_equal(out[analysis.modelled_columns], synthetic.reset_index(drop=True))
    for column in analysis.sensitive_columns:
        shared = set(out[column].dropna().astype(str)) & set(real[column].dropna().astype(str))
        assert shared == set(), column
    assert out["bird_id"].min() > N and out["bird_id"].is_unique
    assert out["owner_email"].dropna().map(lambda v: bool(re.match(r".+@example\.", v))).all()


def test_regenerate_sensitive_differs_between_calls(real_columns: dict[str, pd.Series]) -> None:
    # Setup
    real = pd.DataFrame({"email": real_columns["email"], "n": np.arange(N) % 7})
    analysis = analyze(real)
    synthetic = real[["n"]].head(50)

    # Run
    one = regenerate_sensitive(synthetic, analysis, real, seed=1)
    two = regenerate_sensitive(synthetic, analysis, real, seed=2)

    # Assert
    assert not one["email"].equals(two["email"])


def test_resampled_batches_continue_the_id_sequence() -> None:
    # Setup: the generate stage's loop, as the pipeline runs it: sample modelled columns,
    # restore identifiers, enforce constraints that force resampling.
    from pydantic import TypeAdapter

    from tabular_runner.analysis import TableAnalysis
    from tabular_runner.constraints import enforce
    from tabular_runner.spec import Constraint

    penguins = load_penguins()
    real = penguins.assign(bird_id=np.arange(1, len(penguins) + 1))
    analysis = TableAnalysis.from_dict(analyze(real).to_dict())  # as read from analysis.json
    rng = np.random.default_rng(0)
    drawn = {"rows": 0, "calls": 0}

    def draw(k: int) -> pd.DataFrame:
        sampled = pd.DataFrame(
            {
                c: real[c].sample(k, replace=True, random_state=int(rng.integers(2**31))).to_numpy()
                for c in analysis.modelled_columns
            }  # fmt: skip
        )
        drawn["calls"] += 1
        out = regenerate_sensitive(
            sampled, analysis, real, seed=drawn["calls"], id_start=drawn["rows"]
        )
        drawn["rows"] += k
        return out

    rules = TypeAdapter(list[Constraint]).validate_python(
        [
            {"type": "fixedCombinations", "columns": ["species", "island"]},
            {"type": "unique", "columns": ["bird_id"]},
        ]
    )

    # Run
    out, report = enforce(draw(200), rules, rows=200, real=real, resample=draw)

    # Assert
    assert report.rounds >= 1
    assert len(out) == 200 and out["bird_id"].is_unique
    assert report.constraints[1].rejected == 0  # ids never collide, nothing to reject
    assert out["bird_id"].min() > len(real)
