"""Turn a pydantic JSON Schema into a *structural* Kubernetes OpenAPI v3 schema.

Pydantic emits JSON Schema 2020-12: ``$ref``/``$defs``, ``anyOf`` with ``null`` for optional
fields, ``oneOf`` + ``discriminator`` for tagged unions, numeric ``exclusiveMinimum``, ``const``
and ``additionalProperties: false``. The apiserver accepts none of these in a CRD (see
"Specifying a structural schema" in the Kubernetes docs), so this module rewrites them:

* ``$ref`` is inlined (sibling keys such as ``description`` and ``default`` win);
* ``anyOf: [X, null]`` becomes ``X``; in ``apiextensions.k8s.io/v1`` a ``null`` sent for a
  non-nullable field is pruned before validation, which is what "unset" means in the models;
* a discriminated union becomes ONE object: the tag is an ``enum`` of every variant, the
  properties are the union of the variants' properties, and CEL rules keep each variant
  honest (its required fields present, other variants' fields absent);
* ``exclusiveMinimum: 0`` becomes ``minimum: 0, exclusiveMinimum: true`` (OpenAPI 3.0);
* ``additionalProperties: true`` becomes ``x-kubernetes-preserve-unknown-fields: true``;
* titles, ``additionalProperties: false`` (pruning plus strict field validation already refuse
  unknown fields) and ``null`` defaults are dropped.

Anything the models say that has no structural form raises :class:`SchemaError` naming the
field, so a model change that the generator cannot express fails ``crdgen --check`` loudly.

Extra rules that a JSON Schema cannot carry (CEL, list types, bounds) come from the tables in
:mod:`tabular_runner.crdgen.rules`, keyed by ``Model`` or ``Model.field`` (the pydantic class
name and the wire name of the field), and are applied where that model or field is inlined.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Schema = dict[str, Any]


class SchemaError(ValueError):
    """A model construct that has no structural Kubernetes equivalent."""


# Keys copied as they are from a JSON Schema node to the structural node.
_PASSTHROUGH = (
    "type",
    "description",
    "format",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "default",
)


class Extras:
    """Where the converter asks for additions keyed by model or field path.

    Args:
        by_model: additions merged into the node of a model wherever it is inlined.
        by_field: additions merged into the node of ``Model.field``.
        union_names: name given to a merged discriminated union, keyed by the sorted tuple
            of its variant names (used as the ``Model`` part of its keys).
    """

    def __init__(
        self,
        by_model: Mapping[str, Schema],
        by_field: Mapping[str, Schema],
        union_names: Mapping[tuple[str, ...], str] | None = None,
    ) -> None:
        self.by_model = by_model
        self.by_field = by_field
        self.union_names = dict(union_names or {})
        self.used: set[str] = set()

    def for_model(self, name: str) -> Schema:
        """Return (and mark as used) the additions for model ``name``."""
        if name in self.by_model:
            self.used.add(name)
            return self.by_model[name]
        return {}

    def for_field(self, key: str) -> Schema:
        """Return (and mark as used) the additions for field ``Model.field``."""
        if key in self.by_field:
            self.used.add(key)
            return self.by_field[key]
        return {}

    def unused(self) -> set[str]:
        """Return table keys never applied (a renamed model or field leaves one behind)."""
        return (set(self.by_model) | set(self.by_field)) - self.used


def to_structural(json_schema: Schema, extras: Extras, root_name: str | None = None) -> Schema:
    """Convert a pydantic ``model_json_schema()`` result into a structural schema.

    Args:
        json_schema: the output of ``Model.model_json_schema(by_alias=True, mode="validation")``.
        extras: the rule tables to merge in while converting.
        root_name: model name of the root (defaults to the schema's ``title``).

    Returns:
        A schema every node of which has a ``type`` (or preserves unknown fields).

    Raises:
        SchemaError: for a construct with no structural form.
    """
    converter = _Converter(json_schema.get("$defs", {}), extras)
    name = root_name or str(json_schema.get("title", ""))
    return converter.node(json_schema, model=name, where=name)


class _Converter:
    def __init__(self, defs: Mapping[str, Schema], extras: Extras) -> None:
        self.defs = defs
        self.extras = extras

    # -- one node ------------------------------------------------------------------------

    def node(
        self, src: Schema, *, model: str | None, where: str, field: str | None = None
    ) -> Schema:
        """Convert ``src``.

        ``model`` is set when ``src`` is a model's own schema; ``field`` is the
        ``Model.field`` key when ``src`` is the schema of a model's field.
        """
        src = dict(src)
        if "$ref" in src:
            name = src.pop("$ref").rsplit("/", 1)[1]
            target = dict(self.defs[name])
            target.update(src)  # siblings (description, default) override the definition
            return self.node(target, model=name, where=where)
        if "anyOf" in src:
            return self._any_of(src, model=model, where=where, field=field)
        if "oneOf" in src:
            if "discriminator" not in src:
                raise SchemaError(f"{where}: oneOf without a discriminator has no structural form")
            return self._tagged_union(src, where=where)
        if "allOf" in src:
            raise SchemaError(f"{where}: allOf is not supported; inline the fields in the model")

        out: Schema = {k: copy.deepcopy(src[k]) for k in _PASSTHROUGH if k in src}
        if "description" in out:
            # Docstrings are reST; kubectl explain shows Markdown-ish text: one backtick.
            out["description"] = " ".join(out["description"].replace("``", "`").split())
        if "const" in src:
            out["enum"] = [src["const"]]
            out.setdefault("type", _json_type(src["const"]))
        if out.get("default", 0) is None:
            del out["default"]
        for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if bound in src:
                if isinstance(src[bound], bool):
                    raise SchemaError(f"{where}: boolean {bound} is not JSON Schema 2020-12")
                out[flag] = src[bound]
                out[bound] = True

        kind = out.get("type")
        if kind is None:
            raise SchemaError(f"{where}: no type; give the model field a concrete type")
        if kind == "object":
            self._object(src, out, model=model, where=where)
        elif kind == "array":
            if "items" not in src:
                raise SchemaError(f"{where}: an array needs an item type")
            out["items"] = self.node(src["items"], model=None, where=f"{where}[]")
        if model is not None:
            _merge(out, self.extras.for_model(model), where)
        return out

    def _object(self, src: Schema, out: Schema, *, model: str | None, where: str) -> None:
        props = src.get("properties", {})
        extra = src.get("additionalProperties")
        if props:
            out["properties"] = {}
            for key, value in props.items():
                field_where = f"{where}.{key}"
                field = f"{model}.{key}" if model is not None else None
                converted = self.node(value, model=None, where=field_where, field=field)
                if field is not None:
                    _merge(converted, self.extras.for_field(field), field_where)
                out["properties"][key] = converted
        if extra is True:
            # An open model (``extra="allow"``) or ``dict[str, Any]``: keep what is sent.
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            if props:
                raise SchemaError(f"{where}: properties and a typed additionalProperties")
            out["additionalProperties"] = self.node(extra, model=None, where=f"{where}.*")
        if "required" in out:
            # Fields with a default are filled in by defaulting; only the rest are required.
            out["required"] = [r for r in out["required"] if "default" not in props.get(r, {})]
            if not out["required"]:
                del out["required"]

    def _any_of(self, src: Schema, *, model: str | None, where: str, field: str | None) -> Schema:
        branches = [b for b in src.pop("anyOf") if b != {"type": "null"}]
        if len(branches) == 1:
            merged = dict(branches[0])
            merged.update(src)
            return self.node(merged, model=model, where=where, field=field)
        override = self.extras.by_field.get(field or "", {})
        if override.get("x-kubernetes-preserve-unknown-fields") is True:
            # A union of types (e.g. ``str | list[str]``): structural schemas cannot say it.
            # The field is declared untyped in the rules table on purpose (see there).
            out: Schema = {}
            if "description" in src:
                out["description"] = src["description"]
            return out
        types = [b.get("type", b.get("$ref")) for b in branches]
        raise SchemaError(
            f"{where}: a union of {types} has no structural form; add it to "
            "rules.UNTYPED_UNIONS with a reason, or narrow the model field to one type"
        )

    def _tagged_union(self, src: Schema, *, where: str) -> Schema:
        tag = src["discriminator"]["propertyName"]
        variants: dict[str, tuple[str, Schema]] = {}
        for ref in src["oneOf"]:
            name = ref["$ref"].rsplit("/", 1)[1]
            converted = self.node({"$ref": ref["$ref"]}, model=name, where=f"{where}<{name}>")
            values = converted["properties"][tag].get("enum", [])
            if len(values) != 1:
                raise SchemaError(f"{where}<{name}>: the tag {tag!r} must be one literal")
            variants[str(values[0])] = (name, converted)
        union_name = self.extras.union_names.get(
            tuple(sorted(name for name, _ in variants.values())), "Union"
        )
        return _merge_variants(tag, variants, union_name, self.extras, where)


# -- helpers -------------------------------------------------------------------------------


def _merge_variants(
    tag: str,
    variants: Mapping[str, tuple[str, Schema]],
    union_name: str,
    extras: Extras,
    where: str,
) -> Schema:
    """One object for a tagged union; CEL keeps each variant's required and allowed fields."""
    properties: dict[str, Schema] = {}
    owners: dict[str, list[str]] = {}
    rules: list[Schema] = []
    tags = list(variants)
    for value, (_, schema) in variants.items():
        for key, prop in schema["properties"].items():
            owners.setdefault(key, []).append(value)
            if key == tag:
                continue
            loose, tight = _split_bounds(prop)
            if key in properties and properties[key] != loose:
                raise SchemaError(
                    f"{where}.{key}: variants give this field different types; rename it in one"
                )
            properties[key] = loose
            for bound, limit in tight.items():
                rules.append(_bound_rule(tag, value, union_name, key, bound, limit))
    properties[tag] = {
        "type": "string",
        "enum": tags,
        "description": f"Which kind of {union_name.lower()}: {', '.join(tags)}.",
    }
    for value, (_, schema) in variants.items():
        required = [r for r in schema.get("required", []) if r != tag]
        foreign = sorted(k for k in properties if k != tag and k not in schema["properties"])
        if required:
            rules.append(
                {
                    "rule": f"self.{tag} != '{value}' || ("
                    + " && ".join(f"has(self.{r})" for r in required)
                    + ")",
                    "message": f"{_a(value)} {union_name.lower()} needs " + _and_list(required),
                    "reason": "FieldValueRequired",
                }
            )
        if foreign:
            rules.append(
                {
                    "rule": f"self.{tag} != '{value}' || !("
                    + " || ".join(f"has(self.{f})" for f in foreign)
                    + ")",
                    "message": f"{_a(value)} {union_name.lower()} takes only "
                    + _and_list(sorted(schema["properties"]))
                    + f"; remove {_or_list(foreign)}",
                    "reason": "FieldValueForbidden",
                }
            )
        # Rules a variant model declares for itself apply only when the tag selects it.
        for rule in schema.get("x-kubernetes-validations", []):
            gated = dict(rule)
            gated["rule"] = f"self.{tag} != '{value}' || ({rule['rule']})"
            rules.append(gated)
    out: Schema = {
        "type": "object",
        "description": " ".join(
            f"`{value}`: {schema.get('description', '').strip()}"
            for value, (_, schema) in variants.items()
        ),
        "required": [tag],
        "properties": {k: properties[k] for k in [tag, *sorted(p for p in properties if p != tag)]},
        "x-kubernetes-validations": rules,
    }
    _merge(out, extras.for_model(union_name), where)
    return out


_BOUNDS = ("minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum")


def _split_bounds(prop: Schema) -> tuple[Schema, dict[str, Any]]:
    """Split a variant's field into its shape and its bounds (bounds differ per variant).

    A variant's ``default`` is dropped too: defaulting runs before validation and on every
    item, so a default of one variant would plant a foreign field in the others; the runner's
    model applies the default instead.
    """
    loose = {k: v for k, v in prop.items() if k not in (*_BOUNDS, "default")}
    return loose, {k: prop[k] for k in _BOUNDS if k in prop}


def _bound_rule(tag: str, value: str, union: str, key: str, bound: str, limit: Any) -> Schema:
    op, size = {
        "minItems": (">=", True),
        "maxItems": ("<=", True),
        "minLength": (">=", True),
        "maxLength": ("<=", True),
        "minimum": (">=", False),
        "maximum": ("<=", False),
    }[bound]
    lhs = f"self.{key}.size()" if size else f"self.{key}"
    noun = {"minItems": "items", "maxItems": "items", "minLength": "characters"}.get(bound, "")
    word = "at least" if op == ">=" else "at most"
    return {
        "rule": f"self.{tag} != '{value}' || !has(self.{key}) || {lhs} {op} {limit}",
        "message": f"{key} of {_a(value)} {union.lower()} needs {word} {limit} {noun}".rstrip(),
        "reason": "FieldValueInvalid",
    }


def _merge(out: Schema, extra: Schema, where: str) -> None:
    """Merge a rules-table entry into a converted node.

    Lists of CEL rules are appended, nested mappings merged, other values replaced; naming a
    property the node does not have is an error (a renamed field must not drop its rules).
    """
    for key, value in extra.items():
        if key == "x-kubernetes-validations":
            out[key] = [*out.get(key, []), *copy.deepcopy(value)]
        elif key == "properties":
            for prop, sub in value.items():
                if prop not in out.get("properties", {}):
                    raise SchemaError(f"{where}.{prop}: rules table names an unknown field")
                _merge(out["properties"][prop], sub, f"{where}.{prop}")
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            _merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _or_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def structural_problems(node: Any, where: str = "") -> list[str]:
    """Return why ``node`` is not a structural schema (empty when it is).

    Checks the rules of "Specifying a structural schema": every node has a ``type`` unless it
    preserves unknown fields or is int-or-string; no ``$ref``, ``anyOf``/``oneOf``/``allOf``
    that carry types, ``additionalProperties`` together with ``properties``, nor
    ``additionalProperties: false``.
    """
    problems: list[str] = []
    if not isinstance(node, dict):
        return [f"{where or '<root>'}: not a mapping"]
    for bad in ("$ref", "$defs", "definitions", "oneOf", "anyOf", "allOf", "not", "const"):
        if bad in node:
            problems.append(f"{where or '<root>'}: {bad} is not allowed")
    untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") is True or node.get(
        "x-kubernetes-int-or-string"
    )
    if "type" not in node and not untyped_ok:
        problems.append(f"{where or '<root>'}: no type")
    if node.get("additionalProperties") is False:
        problems.append(f"{where or '<root>'}: additionalProperties: false")
    if "properties" in node and isinstance(node.get("additionalProperties"), dict):
        problems.append(f"{where or '<root>'}: properties with additionalProperties")
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
        node.get("exclusiveMinimum"), bool
    ):
        problems.append(f"{where or '<root>'}: numeric exclusiveMinimum (OpenAPI 3.0 wants bool)")
    for key, sub in node.get("properties", {}).items():
        problems += structural_problems(sub, f"{where}.{key}")
    if isinstance(node.get("items"), dict):
        problems += structural_problems(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{where}.*")
    return problems
