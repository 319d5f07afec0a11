"""Fresh fakes for identifier and personal-data columns.

The generator never sees identifiers or personal data (see :mod:`tabular_runner.analysis`);
after sampling, :func:`regenerate_sensitive` puts those columns back filled with values that
look like the real ones (same format, same share of nulls, unique where the real column is
unique) but are *never* one of the real values: any collision with the real set is drawn
again, so a fake can never point back at a real person.

Fakes come from Faker (``en_US``), seeded, so a job's output is reproducible.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from faker import Faker

from tabular_runner.analysis import ID_UNIQUE_MIN, PII_KINDS, TableAnalysis, name_tokens
from tabular_runner.errors import EngineError

FAKE_KINDS = ("id", *PII_KINDS)
# Rounds of drawing replacements for collisions (with the real set, or repeats) before
# giving up; each round draws all that is still missing.
MAX_DRAWS = 50

_PREFIXED_NUMBER = re.compile(r"^(\D*?)(\d+)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _strings(values: Any) -> pd.Series:
    """``values`` as a Series of ``str`` (typed loosely: pandas-stubs mistype ``astype(str)``)."""
    return pd.Series(values, dtype=object).astype(str)


def _norm(value: Any) -> str:
    """Comparison key of a value: case-insensitive text, integral floats as integers."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _real_keys(real: pd.Series | None) -> set[str]:
    if real is None:
        return set()
    return {_norm(v) for v in pd.unique(real.dropna().to_numpy())}


def _is_unique(real: pd.Series | None, kind: str) -> bool:
    """Whether the fakes must be distinct: identifiers are, when the real ones are.

    Names and addresses repeat in real life, so they never have to be distinct.
    """
    if kind in ("person_name", "street_address"):
        return False
    if real is None:
        return kind in ("id", "email", "national_id", "credit_card")
    values = real.dropna()
    return values.empty or values.nunique() / len(values) >= ID_UNIQUE_MIN


def _template(value: str) -> str:
    """Faker numerify template of a value: digits become ``#`` (the first one ``%``, 1-9)."""
    out = re.sub(r"\d", "#", value)
    return out.replace("#", "%", 1)


def _dominant(values: pd.Series, shape: Callable[[str], str]) -> str | None:
    if values.empty:
        return None
    return str(values.astype(str).map(shape).value_counts().index[0])


# ---------------------------------------------------------------------------------------
# One drawer per kind: ``draw(k)`` returns k candidate values (duplicates allowed).
#
# Faker supplies the en_US vocabulary (names, street suffixes, safe e-mail domains); the draws
# themselves use a seeded numpy generator, because calling Faker once per value costs
# ~0.3 ms on en_US (weighted name lists), i.e. five minutes for a million e-mail addresses.

Drawer = Callable[[int], list[Any]]


class _Vocabulary:
    """Faker's en_US word lists as numpy arrays with normalised weights."""

    def __init__(self) -> None:
        fake = Faker("en_US")
        person = fake.provider("faker.providers.person")
        address = fake.provider("faker.providers.address")
        internet = fake.provider("faker.providers.internet")
        assert person is not None and address is not None and internet is not None
        self.first, self.first_p = _weighted(person.first_names)  # type: ignore[attr-defined]
        self.last, self.last_p = _weighted(person.last_names)  # type: ignore[attr-defined]
        self.suffixes = np.array(address.street_suffixes)  # type: ignore[attr-defined]
        self.domains = np.array(internet.safe_domain_names)  # type: ignore[attr-defined]


def _weighted(names: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    if isinstance(names, dict):
        weights = np.array(list(names.values()), dtype=float)
        return np.array(list(names.keys())), weights / weights.sum()
    return np.array(list(names)), None


_VOCABULARY: _Vocabulary | None = None


def _vocabulary() -> _Vocabulary:
    global _VOCABULARY
    if _VOCABULARY is None:
        _VOCABULARY = _Vocabulary()
    return _VOCABULARY


def _names(rng: np.random.Generator, k: int, last: bool = False) -> np.ndarray[Any, Any]:
    vocab = _vocabulary()
    if last:
        return rng.choice(vocab.last, size=k, p=vocab.last_p)
    return rng.choice(vocab.first, size=k, p=vocab.first_p)


def _email_drawer(rng: np.random.Generator) -> Drawer:
    vocab = _vocabulary()
    calls = [0]

    def draw(k: int) -> list[Any]:
        calls[0] += 1
        first = pd.Series(_names(rng, k), dtype=object).str.lower()
        last = pd.Series(_names(rng, k, last=True), dtype=object).str.lower()
        numbers = pd.Series(rng.integers(0, 100, size=k)).map("{:02d}".format)
        letters = pd.Series(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=k))
        # Faker's en_US user-name shapes, chosen at random per address.
        shapes = [last + "." + first, first + "." + last, first + numbers, letters + last]
        choice = rng.integers(0, len(shapes), size=k)
        local = shapes[0].where(choice == 0, shapes[1])
        local = local.where(choice <= 1, shapes[2]).where(choice <= 2, shapes[3])
        if calls[0] > 2:
            # Name pairs run out after some hundred thousand addresses: later rounds (which
            # only replace collisions) add digits, as people do.
            local = local + pd.Series(rng.integers(0, 10_000, size=k)).astype(str)
        domains = pd.Series(rng.choice(vocab.domains, size=k), dtype=object)
        return (local + "@" + domains).tolist()

    return draw


def _template_drawer(rng: np.random.Generator, template: str) -> Drawer:
    """Fill ``#`` with digits (``%`` with 1-9) in a fixed template."""
    slots = [i for i, ch in enumerate(template) if ch in "#%"]
    chars = list(template)

    def draw(k: int) -> list[Any]:
        digits = rng.integers(0, 10, size=(k, len(slots)))
        for j, i in enumerate(slots):
            if template[i] == "%":
                digits[:, j] = rng.integers(1, 10, size=k)
        out: list[Any] = []
        for row in digits:
            for j, i in enumerate(slots):
                chars[i] = str(row[j])
            out.append("".join(chars))
        return out

    return draw


def _phone_shape(value: str) -> str:
    value = value.strip()
    # Keep a leading "+<country code>" (or "001") literal: "+1-555-..." stays "+1-...".
    match = re.match(r"^(\+\d{1,3}|001)([\s.-].*)$", value)
    if match:
        return match.group(1) + _template(match.group(2))
    return _template(value)


def _phone_drawer(rng: np.random.Generator, real: pd.Series | None) -> Drawer:
    template = None
    if real is not None and not real.dropna().empty:
        if pd.api.types.is_numeric_dtype(real.dtype):
            width = len(str(int(real.dropna().astype(float).median())))
            template = "%" + "#" * (width - 1)
        else:
            template = _dominant(real.dropna(), _phone_shape)
    if template is None or "%" not in template:
        template = "(%##) %##-####"
    return _template_drawer(rng, template)


def _in_shape(values: list[str], real: pd.Series | None) -> list[Any]:
    """Pour digit strings into the real column's layout (``###-##-####``) when it fits."""
    if real is None or real.dropna().empty or pd.api.types.is_numeric_dtype(real.dtype):
        return list(values)
    shape = _dominant(real.dropna(), lambda v: re.sub(r"\d", "#", v.strip()))
    if shape is None:
        return list(values)
    return [_digits_in_shape(v, shape) for v in values]


def _digits_in_shape(digits: str, shape: str) -> str:
    if shape.count("#") != len(digits):
        return digits
    it = iter(digits)
    return "".join(next(it) if ch == "#" else ch for ch in shape)


def _ssn_drawer(rng: np.random.Generator, real: pd.Series | None) -> Drawer:
    def draw(k: int) -> list[Any]:
        # Issued shape: area 001-899 except 666, group 01-99, serial 0001-9999.
        area = rng.integers(1, 900, size=k)
        area[area == 666] = 667
        group = rng.integers(1, 100, size=k)
        serial = rng.integers(1, 10_000, size=k)
        digits = [f"{a:03d}{g:02d}{s:04d}" for a, g, s in zip(area, group, serial, strict=True)]
        return _in_shape(digits, real)

    return draw


def _card_drawer(rng: np.random.Generator, real: pd.Series | None) -> Drawer:
    def draw(k: int) -> list[Any]:
        # Visa-like 16 digits: "4", 14 random digits, the Luhn check digit.
        body = np.concatenate([np.full((k, 1), 4), rng.integers(0, 10, size=(k, 14))], axis=1)
        doubled = body[:, ::-1].copy()
        doubled[:, ::2] *= 2
        doubled[doubled > 9] -= 9
        check = (10 - doubled.sum(axis=1) % 10) % 10
        full = np.concatenate([body, check[:, None]], axis=1)
        ascii_digits = np.ascontiguousarray(full.astype(np.uint8) + ord("0"))
        digits = [b.decode() for b in ascii_digits.view("S16").ravel()]
        return _in_shape(digits, real)

    return draw


def _person_name_drawer(rng: np.random.Generator, real: pd.Series | None) -> Drawer:
    words = 2
    if real is not None and not real.dropna().empty:
        words = int(_strings(real.dropna()).str.count(r"\S+").median())
    tokens = set(name_tokens(str(real.name))) if real is not None and real.name else set()
    if words <= 1:
        last = bool(tokens & {"last", "surname", "family", "lastname", "lname"})
        return lambda k: list(_names(rng, k, last=last))
    return lambda k: [
        f"{a} {b}" for a, b in zip(_names(rng, k), _names(rng, k, last=True), strict=True)
    ]


def _ip_drawer(rng: np.random.Generator, real: pd.Series | None) -> Drawer:
    v6 = real is not None and bool(_strings(real.dropna()).str.contains(":").mean() > 0.5)

    def draw(k: int) -> list[Any]:
        if v6:
            groups = rng.integers(0, 2**16, size=(k, 8))
            return [":".join(f"{g:x}" for g in row) for row in groups]
        first = rng.integers(1, 224, size=k)
        first[np.isin(first, (10, 127))] = 11  # keep clear of private and loopback ranges
        rest = rng.integers(0, 256, size=(k, 3))
        return [f"{a}.{b}.{c}.{d}" for a, (b, c, d) in zip(first, rest, strict=True)]

    return draw


def _address_drawer(rng: np.random.Generator) -> Drawer:
    vocab = _vocabulary()

    def draw(k: int) -> list[Any]:
        # Faker's en_US shape: "<number> <name> <suffix>[ Apt./Suite <nnn>]".
        # Building numbers of 3 to 5 digits.
        low = 10 ** rng.integers(2, 5, size=k)
        numbers = low + (rng.random(size=k) * 9 * low).astype(np.int64)
        use_last = rng.random(size=k) < 0.5
        names = np.where(use_last, _names(rng, k, last=True), _names(rng, k))
        suffixes = rng.choice(vocab.suffixes, size=k)
        units = rng.integers(100, 1000, size=k)
        kind = rng.integers(0, 4, size=k)
        out: list[Any] = []
        for i in range(k):
            base = f"{numbers[i]} {names[i]} {suffixes[i]}"
            out.append(base + ("", "", f" Apt. {units[i]}", f" Suite {units[i]}")[kind[i]])
        return out

    return draw


def _drawer(kind: str, rng: np.random.Generator, real: pd.Series | None, start: int) -> Drawer:
    if kind == "email":
        return _email_drawer(rng)
    if kind == "phone":
        return _phone_drawer(rng, real)
    if kind == "person_name":
        return _person_name_drawer(rng, real)
    if kind == "national_id":
        return _ssn_drawer(rng, real)
    if kind == "credit_card":
        return _card_drawer(rng, real)
    if kind == "ip_address":
        return _ip_drawer(rng, real)
    if kind == "street_address":
        return _address_drawer(rng)
    return lambda k: _id_values(k, real, rng, start)


# ---------------------------------------------------------------------------------------
# Identifiers


def _id_values(
    n: int, real: pd.Series | None, rng: np.random.Generator, start: int = 0
) -> list[Any]:
    """``n`` new unique identifiers in the real column's format, none of them real.

    Sequences continue after the largest real key, skipping ``start`` numbers (so batches
    drawn one after another can be numbered apart).
    """
    values = real.dropna() if real is not None else pd.Series([], dtype="int64")
    if values.empty:
        return list(range(start + 1, start + n + 1))
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        # Surrogate keys: continue the sequence after the largest real key.
        first = int(values.astype(float).max()) + 1 + start
        return list(range(first, first + n))
    strings = _strings(values)
    if strings.str.fullmatch(_UUID.pattern).mean() >= 0.9:
        upper = strings.str.upper().eq(strings).mean() > 0.5
        made = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
        return [u.upper() for u in made] if upper else made
    parts = strings.str.extract(_PREFIXED_NUMBER.pattern)
    if parts[1].notna().mean() >= 0.9:
        prefix = str(parts[0].dropna().value_counts().index[0])
        digits = parts[1].dropna()
        width = int(digits.str.len().mode().iloc[0])
        padded = bool(digits.str.startswith("0").any())
        first = int(digits.astype(int).max()) + 1 + start
        return [
            prefix + (str(i).zfill(width) if padded else str(i)) for i in range(first, first + n)
        ]
    # Any other code: random characters in the shape of real codes (A→letter, 9→digit).
    shapes = strings.sample(n=n, replace=True, random_state=int(rng.integers(2**31))).tolist()
    return [_fill_shape(s, rng) for s in shapes]


_UPPER = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_LOWER = np.array(list("abcdefghijklmnopqrstuvwxyz"))
_DIGITS = np.array(list("0123456789"))


def _fill_shape(shape: str, rng: np.random.Generator) -> str:
    out = []
    for ch in shape:
        if ch.isdigit():
            out.append(str(rng.choice(_DIGITS)))
        elif ch.isupper():
            out.append(str(rng.choice(_UPPER)))
        elif ch.islower():
            out.append(str(rng.choice(_LOWER)))
        else:
            out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------------------------------
# Public API


def fake_values(
    kind: str, n: int, *, seed: int, real: pd.Series | None = None, start: int = 0
) -> pd.Series:
    """Return ``n`` fake values of ``kind``, none equal to a real value.

    Args:
        kind: ``id`` or a PII kind (``email``, ``phone``, ``person_name``, ``national_id``,
            ``credit_card``, ``ip_address``, ``street_address``).
        n: Number of values.
        seed: Seed of Faker and of the null positions.
        real: The real column: its format, null share and uniqueness are kept, and its
            values are never produced.
        start: For sequential identifiers, how many numbers after the largest real one to
            skip; give each batch of one output a different ``start`` so ids never repeat.

    Returns:
        A Series of length ``n`` (integers stay integers; nulls where the real had them).

    Raises:
        ValueError: for an unknown ``kind``.
        EngineError: if not enough values distinct from the real ones could be drawn.
    """
    if kind not in FAKE_KINDS:
        raise ValueError(f"unknown fake kind {kind!r}; known: {', '.join(FAKE_KINDS)}")
    rng = np.random.default_rng(seed)
    null_fraction = float(real.isna().mean()) if real is not None and len(real) else 0.0
    n_null = int(round(null_fraction * n))
    n_values = n - n_null
    forbidden = _real_keys(real)
    unique = _is_unique(real, kind)

    values = _collect(n_values, _drawer(kind, rng, real, start), forbidden, unique, kind)

    full: list[Any] = values
    if n_null:
        nulls = set(rng.choice(n, size=n_null, replace=False).tolist())
        stream = iter(values)
        full = [None if i in nulls else next(stream) for i in range(n)]
    out = pd.Series(full, dtype=object)
    if real is not None and pd.api.types.is_numeric_dtype(real.dtype):
        # Numbers stay numbers: int64 without nulls, float64 (NaN) with them, like pandas.
        out = pd.to_numeric(out)
        if n_null == 0 and pd.api.types.is_integer_dtype(real.dtype):
            out = out.astype(real.dtype)
    return out.reset_index(drop=True)


def _keys(values: list[Any]) -> pd.Series:
    """:func:`_norm` of many values at once."""
    series = pd.Series(values, dtype=object)
    if all(isinstance(v, str) for v in values):
        return series.str.strip().str.lower()
    return series.map(_norm)


def _collect(n: int, draw: Drawer, forbidden: set[str], unique: bool, kind: str) -> list[Any]:
    """Draw until ``n`` values are gathered that are not real (and not repeated, if unique)."""
    out: list[Any] = []
    seen: set[str] = set()
    drawn = 0
    for _ in range(MAX_DRAWS):
        missing = n - len(out)
        if missing == 0:
            return out
        # Draw for the acceptance rate seen so far (collisions are usually rare, so one round
        # nearly always does; a real column covering most of a vocabulary needs more).
        rate = max(len(out), 1) / drawn if drawn else 1.0
        ask = int(min(missing / max(rate, 1e-3), 100 * missing) * 1.05) + 1
        batch = draw(ask)
        drawn += ask
        keys = _keys(batch)
        keep = ~keys.isin(forbidden) if forbidden else pd.Series(True, index=keys.index)
        if unique:
            keep &= ~keys.duplicated()
            if seen:
                keep &= ~keys.isin(seen)
        chosen = np.flatnonzero(keep.to_numpy())[:missing]
        out.extend(batch[i] for i in chosen)
        if unique:
            seen.update(keys.iloc[chosen].tolist())
    if len(out) == n:
        return out
    raise EngineError(
        f"could not draw {n} {'unique ' if unique else ''}fake {kind} values that differ from "
        "every real value"
    )


def regenerate_sensitive(
    synthetic: pd.DataFrame,
    analysis: TableAnalysis,
    real: pd.DataFrame,
    seed: int,
    *,
    id_start: int = 0,
) -> pd.DataFrame:
    """Add the identifier and PII columns back to sampled rows, as fakes.

    Args:
        synthetic: Sampled rows with the modelled columns.
        analysis: Analysis of the real table (says which columns are sensitive).
        real: The real table (formats, null shares; values to avoid).
        seed: Seed of the fakes (vary it between calls to get different values).
        id_start: Offset of sequential identifiers: the rows already drawn for the same
            output, so a resampled batch continues the numbering instead of repeating it.

    Returns:
        The rows with every analysed column, in the real table's column order.

    Raises:
        EngineError: if a modelled column is missing from ``synthetic``.
    """
    n = len(synthetic)
    out: dict[str, pd.Series] = {}
    for position, col in enumerate(analysis.columns):
        if col.sensitive:
            kind = col.pii if col.pii is not None else "id"
            column = real[col.name] if col.name in real.columns else None
            # Distinct, stable seed per column so two columns never share a stream.
            out[col.name] = fake_values(
                kind, n, seed=seed * 1_000_003 + position, real=column, start=id_start
            )
        elif col.name in synthetic.columns:
            out[col.name] = synthetic[col.name].reset_index(drop=True)
        else:
            raise EngineError(f"the generator's output lacks the modelled column {col.name!r}")
    return pd.DataFrame(out, index=pd.RangeIndex(n))
