"""Schema analysis of a real table: column kinds, statistics, PII, keys.

The ``analyze`` stage decides, per column, what the generator will see:

* ``numeric``, ``categorical``, ``boolean``, ``datetime`` and ``text`` columns are *modelled*;
* ``id`` columns (surrogate keys) and columns holding personal data (``pii``) are *not*: the
  generator never trains on them, and :mod:`tabular_runner.pii` fills them with fresh fakes
  afterwards. That is why the report never carries real values of those columns (no top
  values, no min/max): the analysis lands in ``report.json``, which is widely shared.

Detection is deliberately conservative. A value pattern must hold for most of a sampled
column (90 %, or 60 % when the column name hints at the kind) before a column is called
personal data, so ordinary categoricals such as Adult's ``race`` or ``native_country`` stay
categorical. Counts and ranges are computed on the whole column (cheap, vectorised); value
patterns on a seeded sample of ``sample_rows`` rows.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import numpy as np
import pandas as pd

from tabular_runner.errors import UserInputError

ColumnKind = Literal["numeric", "categorical", "boolean", "datetime", "id", "text"]
PiiKind = Literal[
    "email",
    "phone",
    "person_name",
    "national_id",
    "credit_card",
    "ip_address",
    "street_address",
]

COLUMN_KINDS: tuple[str, ...] = get_args(ColumnKind)
PII_KINDS: tuple[str, ...] = get_args(PiiKind)

# Share of sampled non-null values that must match a PII pattern: strict without support
# from the column name, looser when the name agrees (``email``, ``phone``, ``ssn``...).
PII_MATCH_MIN = 0.9
PII_MATCH_MIN_WITH_HINT = 0.6
# A column is "unique-ish" (an identifier) when nearly every non-null value is distinct.
ID_UNIQUE_MIN = 0.99
# A column whose name says "id"/"key" is an identifier from this distinct share on.
ID_NAMED_UNIQUE_MIN = 0.5
# Free text: long strings, mostly distinct.
TEXT_MEAN_LENGTH_MIN = 30.0
TEXT_MEAN_WORDS_MIN = 5.0
TEXT_DISTINCT_MIN = 0.5
# A datetime format must parse this share of the sampled strings.
DATETIME_PARSE_MIN = 0.95
TOP_VALUES_MAX = 10
# A value seen fewer times than this could single out a person, so it is never reported.
TOP_VALUE_MIN_COUNT = 5

_SDTYPE_OF_KIND = {
    "numeric": "numerical",
    "categorical": "categorical",
    "boolean": "boolean",
    "datetime": "datetime",
    "id": "id",
    # Not an SDV statistical sdtype: SDMetrics skips it; SDV would anonymise it with Faker.
    "text": "text",
}
_SDTYPE_OF_PII = {
    "email": "email",
    "phone": "phone_number",
    "person_name": "name",
    "national_id": "ssn",
    "credit_card": "credit_card_number",
    "ip_address": "ipv4_address",
    "street_address": "street_address",
}

_DATETIME_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    # en_US first: an all-ambiguous column (every day <= 12) reads month-first.
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y",
    "%m-%d-%Y",
    "%d-%m-%Y",
)
_DATE_SHAPE = re.compile(
    r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_SSN_DASHED = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_SSN_BARE = re.compile(r"^\d{9}$")
_CARD = re.compile(r"^\d{4}(?:[ -]?\d{2,7}){2,4}$")
_PHONE_CHARS = re.compile(r"^\+?[\d\s().-]+$")
_PHONE_EXTENSION = re.compile(r"\s*(?:x|ext\.?|#)\s*\d{1,6}$", re.IGNORECASE)
_NAME_TOKEN = r"[A-Z][A-Za-z'’-]*[a-z]"
_PERSON_NAME = re.compile(
    rf"^(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+)?{_NAME_TOKEN}"
    rf"(?:\s+[A-Z]\.)?(?:\s+{_NAME_TOKEN}){{0,3}}"
    r"(?:,?\s+(?:Jr|Sr|II|III|IV|MD|PhD|DDS|DVM)\.?)?$"
)
_ADDRESS = re.compile(
    r"^\d{1,6}[A-Za-z]?\s+[A-Z0-9][A-Za-z0-9.'’-]*(?:\s+[A-Z0-9][A-Za-z0-9.'’-]*)+"
    r"(?:,?\s+(?:Apt\.?|Suite|Ste\.?|Unit|#)\s*[\w-]+)?$"
)
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_PREFIXED_NUMBER = re.compile(r"^([A-Za-z]*[-_/]?)(\d+)$")
_CODE = re.compile(r"^(?=.*\d)[A-Za-z0-9_-]{4,64}$")

_PII_HINTS: dict[str, frozenset[str]] = {
    "email": frozenset({"email", "mail", "emailaddress"}),
    "phone": frozenset({"phone", "tel", "telephone", "mobile", "cell", "fax", "phonenumber"}),
    "national_id": frozenset({"ssn", "social", "sin", "nin", "national", "tin", "taxid"}),
    "credit_card": frozenset({"card", "credit", "cc", "pan", "creditcard"}),
    "ip_address": frozenset({"ip", "ipv4", "ipv6", "ipaddress"}),
    "street_address": frozenset({"address", "street", "addr", "line1", "address1"}),
}
_NAME_PARTS = frozenset(
    {
        "first",
        "last",
        "full",
        "given",
        "family",
        "middle",
        "surname",
        "firstname",
        "lastname",
        "fullname",
        "fname",
        "lname",
        "forename",
    }
)
_NAME_OWNERS = frozenset(
    {
        "customer",
        "patient",
        "person",
        "employee",
        "contact",
        "client",
        "owner",
        "holder",
        "member",
        "student",
        "passenger",
        "guest",
        "applicant",
        "account",
        "card",
    }
)
_STRONG_KEY_TOKENS = frozenset({"id", "uuid", "guid", "pk", "key"})
_WEAK_KEY_TOKENS = frozenset({"number", "num", "no", "nr", "code", "ref", "index", "idx"})


# ---------------------------------------------------------------------------------------
# Result types


@dataclass
class ColumnAnalysis:
    """What ``analyze`` found out about one column."""

    name: str
    kind: str
    dtype: str
    null_count: int
    null_fraction: float
    cardinality: int
    unique_fraction: float
    pii: str | None = None
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    std: float | None = None
    top_values: list[dict[str, Any]] = field(default_factory=list)
    datetime_format: str | None = None

    @property
    def sensitive(self) -> bool:
        """True for identifiers and personal data: never modelled, never reported by value."""
        return self.kind == "id" or self.pii is not None

    @property
    def sdtype(self) -> str:
        """The SDV/SDMetrics sdtype of the column."""
        if self.pii is not None:
            return _SDTYPE_OF_PII[self.pii]
        return _SDTYPE_OF_KIND[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form (omits statistics that do not apply)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "dtype": self.dtype,
            "pii": self.pii,
            "nullCount": self.null_count,
            "nullFraction": self.null_fraction,
            "cardinality": self.cardinality,
            "uniqueFraction": self.unique_fraction,
        }
        for key, value in (
            ("min", self.min),
            ("max", self.max),
            ("mean", self.mean),
            ("std", self.std),
            ("datetimeFormat", self.datetime_format),
        ):
            if value is not None:
                out[key] = value
        if self.top_values:
            out["topValues"] = [dict(v) for v in self.top_values]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnAnalysis:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            dtype=str(data["dtype"]),
            null_count=int(data["nullCount"]),
            null_fraction=float(data["nullFraction"]),
            cardinality=int(data["cardinality"]),
            unique_fraction=float(data["uniqueFraction"]),
            pii=data.get("pii"),
            min=data.get("min"),
            max=data.get("max"),
            mean=data.get("mean"),
            std=data.get("std"),
            top_values=[dict(v) for v in data.get("topValues", [])],
            datetime_format=data.get("datetimeFormat"),
        )


@dataclass
class TableAnalysis:
    """What ``analyze`` found out about a table."""

    row_count: int
    columns: list[ColumnAnalysis]
    primary_key_candidates: list[str] = field(default_factory=list)
    sampled_rows: int = 0

    @property
    def column_count(self) -> int:
        """Number of columns."""
        return len(self.columns)

    @property
    def column_names(self) -> list[str]:
        """All column names, in the source's order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnAnalysis:
        """Return the analysis of column ``name`` (KeyError if absent)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def kinds(self) -> dict[str, str]:
        """``{column: kind}`` in column order."""
        return {c.name: c.kind for c in self.columns}

    @property
    def modelled_columns(self) -> list[str]:
        """Columns the generator trains on: all but identifiers and personal data."""
        return [c.name for c in self.columns if not c.sensitive]

    @property
    def sensitive_columns(self) -> list[str]:
        """Identifier and PII columns, regenerated as fakes after sampling."""
        return [c.name for c in self.columns if c.sensitive]

    def columns_of_kind(self, kind: str) -> list[str]:
        """Modelled columns of ``kind`` (``numeric``, ``categorical``...)."""
        return [c.name for c in self.columns if c.kind == kind and not c.sensitive]

    def sdtypes(self) -> dict[str, str]:
        """``{column: sdtype}`` hints for SDV metadata and SDMetrics."""
        return {c.name: c.sdtype for c in self.columns}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form for ``analysis.json`` and ``report.json``."""
        return {
            "rowCount": self.row_count,
            "columnCount": self.column_count,
            "sampledRows": self.sampled_rows,
            "primaryKeyCandidates": list(self.primary_key_candidates),
            "modelledColumns": self.modelled_columns,
            "sensitiveColumns": self.sensitive_columns,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableAnalysis:
        """Rebuild from :meth:`to_dict` output (e.g. ``analysis.json``)."""
        return cls(
            row_count=int(data["rowCount"]),
            columns=[ColumnAnalysis.from_dict(c) for c in data["columns"]],
            primary_key_candidates=[str(c) for c in data.get("primaryKeyCandidates", [])],
            sampled_rows=int(data.get("sampledRows", 0)),
        )


# ---------------------------------------------------------------------------------------
# Input checks


def check_data(df: pd.DataFrame, where: str) -> None:
    """Refuse a table the pipeline cannot work with.

    Args:
        df: The table as read.
        where: Field to name in the error, e.g. ``spec.source``.

    Raises:
        UserInputError: for duplicate column names, no rows, no columns, or a column that
            holds no value at all.
    """
    names = [str(c) for c in df.columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserInputError(
            where,
            f"duplicate column names: {', '.join(repr(d) for d in duplicates)}",
            "rename them so that every column name is unique",
        )
    if df.shape[1] == 0:
        raise UserInputError(where, "the table has no columns", "check the file and its format")
    if df.shape[0] == 0:
        raise UserInputError(
            where, "the table has no rows", "point the source at a table with data"
        )
    empty = [str(c) for c in df.columns if df[c].isna().all()]
    if empty:
        quoted = ", ".join(repr(c) for c in empty)
        noun = "column" if len(empty) == 1 else "columns"
        raise UserInputError(
            where,
            f"{noun} {quoted} {'is' if len(empty) == 1 else 'are'} entirely empty",
            "drop it or fill it",
        )


# ---------------------------------------------------------------------------------------
# Analysis


def analyze(df: pd.DataFrame, *, sample_rows: int = 50_000, seed: int = 0) -> TableAnalysis:
    """Detect each column's kind, statistics and personal data, and the key candidates.

    Args:
        df: The real table.
        sample_rows: Rows sampled (seeded) for value-pattern detection.
        seed: Seed of that sample.

    Returns:
        The table's analysis.
    """
    n_sample = min(len(df), max(sample_rows, 1))
    sample = df.sample(n=n_sample, random_state=seed) if n_sample < len(df) else df
    columns = [_analyze_column(str(name), df[name], sample[name]) for name in df.columns]
    return TableAnalysis(
        row_count=len(df),
        columns=columns,
        primary_key_candidates=_primary_key_candidates(df, columns),
        sampled_rows=n_sample,
    )


def name_tokens(name: str) -> list[str]:
    """Split a column name into lower-case words (``customerId`` → ``customer``, ``id``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _analyze_column(name: str, full: pd.Series, sample: pd.Series) -> ColumnAnalysis:
    non_null = full.dropna()
    n_non_null = len(non_null)
    null_count = int(len(full) - n_non_null)
    try:
        cardinality = int(non_null.nunique())
    except TypeError:  # unhashable cells (lists, dicts): treat every value as distinct
        cardinality = n_non_null
    col = ColumnAnalysis(
        name=name,
        kind="categorical",
        dtype=str(full.dtype),
        null_count=null_count,
        null_fraction=_round(null_count / len(full)) if len(full) else 0.0,
        cardinality=cardinality,
        unique_fraction=_round(cardinality / n_non_null) if n_non_null else 0.0,
    )
    values = sample.dropna()
    tokens = name_tokens(name)

    if pd.api.types.is_bool_dtype(full.dtype) or _all_bools(non_null):
        col.kind = "boolean"
    elif pd.api.types.is_datetime64_any_dtype(full.dtype):
        col.kind = "datetime"
        _datetime_stats(col, pd.to_datetime(non_null))
    elif pd.api.types.is_numeric_dtype(full.dtype):
        col.pii = _numeric_pii(values, tokens)
        col.kind = "id" if _numeric_is_id(non_null, col.unique_fraction, tokens) else "numeric"
        if not col.sensitive:
            _numeric_stats(col, non_null)
    else:
        # Every string test runs on distinct values weighted by their counts.
        counts = _string_counts(values)
        col.pii = _pii_of_counts(counts, tokens)
        fmt = None if col.pii else _datetime_format(counts)
        if fmt is not None:
            col.kind = "datetime"
            col.datetime_format = fmt
            parsed = pd.to_datetime(non_null.astype(str), format=fmt, errors="coerce")
            _datetime_stats(col, parsed.dropna())
        elif _string_is_id(counts, col.unique_fraction, tokens):
            col.kind = "id"
        elif _is_text(counts, col.unique_fraction):
            col.kind = "text"

    if col.kind in ("categorical", "boolean") and not col.sensitive:
        col.top_values = _top_values(non_null)
    return col


def _strings(values: Any) -> pd.Series:
    """``values`` as a Series of ``str`` (typed loosely: pandas-stubs mistype ``astype(str)``)."""
    return pd.Series(values, dtype=object).astype(str)


def _round(value: float) -> float:
    return round(float(value), 6)


def _all_bools(values: pd.Series) -> bool:
    if values.dtype != object or values.empty:
        return False
    return all(isinstance(v, bool | np.bool_) for v in pd.unique(values.to_numpy()))


def _string_counts(values: pd.Series) -> pd.Series:
    """Distinct stripped, non-empty strings of ``values`` and how often each occurs."""
    counts = values.astype(str).value_counts()
    stripped = counts.groupby(counts.index.str.strip()).sum()
    return stripped[stripped.index != ""]


def _weighted_share(counts: pd.Series, passed: pd.Series | np.ndarray[Any, Any]) -> float:
    total = counts.sum()
    if total == 0:
        return 0.0
    mask = np.asarray(passed, dtype=bool)
    return float(counts.to_numpy()[mask].sum() / total)


def _pattern_share(counts: pd.Series, pattern: re.Pattern[str]) -> float:
    index = _strings(counts.index)
    return _weighted_share(counts, index.str.fullmatch(pattern.pattern).fillna(False))


def _json_number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _numeric_stats(col: ColumnAnalysis, values: pd.Series) -> None:
    if values.empty:
        return
    numbers = values.astype(float)
    col.min = _json_number(numbers.min())
    col.max = _json_number(numbers.max())
    col.mean = _json_number(numbers.mean())
    col.std = _json_number(numbers.std(ddof=0))


def _datetime_stats(col: ColumnAnalysis, values: pd.Series) -> None:
    if values.empty:
        return
    col.min = pd.Timestamp(values.min()).isoformat()
    col.max = pd.Timestamp(values.max()).isoformat()


def _top_values(values: pd.Series) -> list[dict[str, Any]]:
    total = len(values)
    if total == 0:
        return []
    counts = values.astype(str).value_counts().head(TOP_VALUES_MAX)
    return [
        {"value": str(value), "count": int(count), "fraction": _round(count / total)}
        for value, count in counts.items()
        if count >= TOP_VALUE_MIN_COUNT
    ]


def _datetime_format(counts: pd.Series) -> str | None:
    """Return the strptime format most of the strings follow, or None."""
    if counts.empty or _pattern_share(counts, _DATE_SHAPE) < DATETIME_PARSE_MIN:
        return None
    probe = counts.head(5000)  # the most frequent distinct values
    index = _strings(probe.index)
    best: tuple[float, str] | None = None
    for fmt in _DATETIME_FORMATS:
        parsed = pd.to_datetime(index, format=fmt, errors="coerce")
        share = _weighted_share(probe, parsed.notna())
        if share >= DATETIME_PARSE_MIN and (best is None or share > best[0]):
            best = (share, fmt)
    return best[1] if best else None


def _numeric_is_id(values: pd.Series, unique_fraction: float, tokens: list[str]) -> bool:
    if values.empty or pd.api.types.is_bool_dtype(values.dtype):
        return False
    numbers = values.astype(float)
    if not bool(np.all(np.mod(numbers, 1) == 0)):
        return False  # measurements, not keys
    if _STRONG_KEY_TOKENS & set(tokens) and unique_fraction >= ID_NAMED_UNIQUE_MIN:
        return len(values) > 1
    if unique_fraction < ID_UNIQUE_MIN or len(values) < 10:
        return False
    if _WEAK_KEY_TOKENS & set(tokens):
        return True
    # Unnamed but a dense run of integers (1, 2, 3, ...): a surrogate key.
    span = float(numbers.max() - numbers.min() + 1)
    return span <= 1.05 * values.nunique()


def _string_is_id(counts: pd.Series, unique_fraction: float, tokens: list[str]) -> bool:
    if counts.empty:
        return False
    if _STRONG_KEY_TOKENS & set(tokens) and unique_fraction >= ID_NAMED_UNIQUE_MIN:
        return True
    if unique_fraction < ID_UNIQUE_MIN or counts.sum() < 10:
        return False
    if _WEAK_KEY_TOKENS & set(tokens):
        return True
    return any(
        _pattern_share(counts, pattern) >= PII_MATCH_MIN
        for pattern in (_UUID, _PREFIXED_NUMBER, _CODE)
    )


def _is_text(counts: pd.Series, unique_fraction: float) -> bool:
    if counts.empty or unique_fraction < TEXT_DISTINCT_MIN:
        return False
    index = _strings(counts.index)
    weights = counts.to_numpy(dtype=float)
    mean_length = float(np.average(index.str.len().to_numpy(dtype=float), weights=weights))
    words = index.str.count(r"\S+").to_numpy(dtype=float)
    mean_words = float(np.average(words, weights=weights))
    return mean_length >= TEXT_MEAN_LENGTH_MIN or mean_words >= TEXT_MEAN_WORDS_MIN


# ---------------------------------------------------------------------------------------
# Personal data


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card(value: str) -> bool:
    if not _CARD.match(value):
        return False
    digits = re.sub(r"[ -]", "", value)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _is_phone(value: str, hinted: bool) -> bool:
    core = _PHONE_EXTENSION.sub("", value.strip())
    if not _PHONE_CHARS.match(core):
        return False
    digits = re.sub(r"\D", "", core)
    if not 10 <= len(digits) <= 15:
        return False
    # Bare digit runs are as likely account numbers: only with a hint from the name.
    return hinted or bool(re.search(r"[\s().+-]", core))


def _is_ip(value: str) -> bool:
    if "." not in value and ":" not in value:
        return False
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def _is_name_hint(tokens: list[str]) -> bool:
    words = set(tokens)
    if words & _NAME_PARTS:
        return True
    if "name" not in words:
        return False
    return words <= {"name"} | _NAME_OWNERS


def _hinted(kind: str, tokens: list[str]) -> bool:
    if kind == "person_name":
        return _is_name_hint(tokens)
    hints = _PII_HINTS[kind]
    joined = "".join(tokens)
    return bool(hints & set(tokens)) or joined in hints


def _share(counts: pd.Series, test: Any) -> float:
    """Share of values passing ``test``; ``counts`` maps each distinct value to its count.

    Testing distinct values once keeps low-cardinality columns (most of them) nearly free.
    """
    total = counts.sum()
    if total == 0:
        return 0.0
    passed = np.fromiter((bool(test(v)) for v in counts.index), dtype=bool, count=len(counts))
    return float(counts.to_numpy()[passed].sum() / total)


def detect_pii(values: pd.Series, tokens: Iterable[str] = ()) -> str | None:
    """Return the kind of personal data ``values`` hold, or None.

    Args:
        values: Non-null sampled values of one column, as strings.
        tokens: Words of the column's name (see :func:`name_tokens`), used as support.

    Returns:
        One of :data:`PII_KINDS` or None.
    """
    return _pii_of_counts(_string_counts(values.dropna()), list(tokens))


def _pii_of_counts(counts: pd.Series, words: list[str]) -> str | None:
    if counts.empty:
        return None
    distinct = len(counts) / counts.sum()
    scores: dict[str, float] = {}
    for kind in PII_KINDS:
        hinted = _hinted(kind, words)
        if kind == "email":
            share = _share(counts, lambda v: bool(_EMAIL.match(v)))
        elif kind == "ip_address":
            share = _share(counts, _is_ip)
        elif kind == "national_id":
            pattern = _SSN_BARE if hinted else _SSN_DASHED
            share = _share(counts, lambda v, p=pattern: bool(_SSN_DASHED.match(v) or p.match(v)))
        elif kind == "credit_card":
            share = _share(counts, _is_card)
        elif kind == "phone":
            share = _share(counts, lambda v, h=hinted: _is_phone(v, h))
        elif kind == "street_address":
            share = _share(counts, lambda v: bool(_ADDRESS.match(v)))
            # Without a hint, addresses must look like addresses *and* be mostly distinct.
            if not hinted and distinct < 0.5:
                share = 0.0
        else:  # person_name
            if hinted:
                share = _share(counts, lambda v: bool(_PERSON_NAME.match(v)))
            else:
                # Single capitalised words ("White", "Male") are categories, not names:
                # without a hint we need "First Last" shapes and many distinct values.
                share = _share(counts, lambda v: bool(_PERSON_NAME.match(v)) and " " in v.strip())
                if distinct < 0.5 or len(counts) < 20:
                    share = 0.0
        threshold = PII_MATCH_MIN_WITH_HINT if hinted else PII_MATCH_MIN
        if share >= threshold:
            scores[kind] = share
    if not scores:
        return None
    # Highest share wins; PII_KINDS order (most specific first) breaks ties.
    return max(scores, key=lambda k: (scores[k], -PII_KINDS.index(k)))


def _numeric_pii(values: pd.Series, tokens: list[str]) -> str | None:
    """Personal data stored as numbers: card numbers (Luhn), or phone/SSN with a name hint."""
    if values.empty:
        return None
    numbers = values.astype(float)
    if not bool(np.all(np.mod(numbers, 1) == 0)):
        return None
    digits = values.astype("int64").astype(str).value_counts()
    if _share(digits, lambda v: 13 <= len(v) <= 19 and _luhn(v)) >= PII_MATCH_MIN:
        return "credit_card"
    if _hinted("phone", tokens) and _share(digits, lambda v: 10 <= len(v) <= 15) >= 0.9:
        return "phone"
    if _hinted("national_id", tokens) and _share(digits, lambda v: 7 <= len(v) <= 9) >= 0.9:
        return "national_id"
    return None


# ---------------------------------------------------------------------------------------
# Keys


def _primary_key_candidates(df: pd.DataFrame, columns: list[ColumnAnalysis]) -> list[str]:
    """Unique, non-null columns that could key the table; identifiers first."""
    keyed: list[tuple[int, int, str]] = []
    for position, col in enumerate(columns):
        if col.null_count or col.unique_fraction < 1.0 or len(df) < 2:
            continue
        if col.kind in ("boolean", "datetime", "text"):
            continue
        if col.kind == "numeric" and not _integral(df[col.name]):
            continue  # a unique measurement is not a key
        rank = 0 if col.kind == "id" else (1 if col.pii is None else 2)
        keyed.append((rank, position, col.name))
    return [name for _, _, name in sorted(keyed)]


def _integral(values: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(values.dtype):
        return True
    if not pd.api.types.is_float_dtype(values.dtype):
        return False
    return bool(np.all(np.mod(values.dropna().to_numpy(dtype=float), 1) == 0))


def _key_values(values: pd.Series) -> tuple[str, set[Any]]:
    """Normalise key values for comparison across tables: integral floats become ints."""
    clean = values.dropna()
    if pd.api.types.is_numeric_dtype(clean.dtype) and not pd.api.types.is_bool_dtype(clean.dtype):
        if _integral(clean):
            return "int", set(clean.astype("int64").tolist())
        return "float", set(clean.astype(float).tolist())
    return "str", set(clean.astype(str).tolist())


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _name_similarity(child_column: str, parent_table: str, parent_column: str) -> float:
    """How much ``child_column`` sounds like a reference to ``parent_table.parent_column``."""
    child = [_singular(t) for t in name_tokens(child_column)]
    parent_col = [_singular(t) for t in name_tokens(parent_column)]
    table = [_singular(t) for t in name_tokens(parent_table)]
    if child == parent_col and not set(parent_col) <= _STRONG_KEY_TOKENS:
        return 1.0  # same specific name on both sides: customer_id → customer_id
    if child == table + [t for t in parent_col if t not in table]:
        return 1.0  # customers.id ← customer_id
    subject = set(child) - _STRONG_KEY_TOKENS
    target = (set(table) | set(parent_col)) - _STRONG_KEY_TOKENS
    if not subject or not target:
        return 0.0
    overlap = len(subject & target) / len(subject | target)
    fuzzy = difflib.SequenceMatcher(
        None, "_".join(sorted(subject)), "_".join(sorted(target))
    ).ratio()
    return _round(max(overlap, 0.8 * fuzzy if fuzzy >= 0.75 else 0.0))


def foreign_key_candidates(
    tables: dict[str, pd.DataFrame],
    analyses: dict[str, TableAnalysis],
    *,
    min_coverage: float = 0.95,
) -> list[dict[str, Any]]:
    """Propose foreign keys: child columns whose values lie in a parent's key candidate.

    Values decide (a share ``coverage`` of the child's non-null values must occur in the
    parent key, all of them when the names share nothing); the names break ties and filter
    coincidences, so a small integer column such
    as ``quantity`` is never proposed as a reference to ``orders.id`` merely because its values
    happen to be valid ids.

    Args:
        tables: ``{table name: frame}``.
        analyses: ``{table name: analysis}`` of the same tables.
        min_coverage: Least share of child values found among the parent's keys.

    Returns:
        One proposal per child column, best first: ``{"parentTable", "parentColumn",
        "childTable", "childColumn", "coverage", "nameSimilarity", "score"}``.
    """
    parents: list[tuple[str, str, str, set[Any]]] = []
    for table, analysis in analyses.items():
        for key in analysis.primary_key_candidates:
            kind, values = _key_values(tables[table][key])
            if kind != "float":
                parents.append((table, key, kind, values))

    proposals: list[dict[str, Any]] = []
    for child_table, child_analysis in analyses.items():
        own_key = child_analysis.primary_key_candidates[:1]
        for col in child_analysis.columns:
            if col.name in own_key or col.kind in ("boolean", "datetime", "text") or col.pii:
                continue
            kind, values = _key_values(tables[child_table][col.name])
            if not values or kind == "float":
                continue
            best: dict[str, Any] | None = None
            for parent_table, parent_key, parent_kind, parent_values in parents:
                if parent_kind != kind or (parent_table, parent_key) == (child_table, col.name):
                    continue
                similarity = _name_similarity(col.name, parent_table, parent_key)
                if similarity <= 0.0 and col.kind != "id":
                    continue
                child = tables[child_table][col.name].dropna()
                normalised = child.astype("int64") if kind == "int" else child.astype(str)
                coverage = _round(float(normalised.isin(parent_values).mean()))
                # Without support from the names, only a complete match is convincing.
                if coverage < (min_coverage if similarity > 0.0 else 1.0):
                    continue
                candidate = {
                    "parentTable": parent_table,
                    "parentColumn": parent_key,
                    "childTable": child_table,
                    "childColumn": col.name,
                    "coverage": coverage,
                    "nameSimilarity": similarity,
                    "score": _round(coverage + similarity),
                }
                if best is None or (coverage, similarity) > (
                    best["coverage"],
                    best["nameSimilarity"],
                ):
                    best = candidate
            if best is not None:
                proposals.append(best)
    return sorted(proposals, key=lambda p: cast(float, p["score"]), reverse=True)
