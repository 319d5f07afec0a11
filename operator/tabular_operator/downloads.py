"""Presigned downloads of a finished job: which files, for how long, under which names (pure).

When a SynthesisJob reaches COMPLETE the operator writes a Secret ``<job>-download`` in the
job's namespace: one key per downloadable file (``output.parquet``, ``report.html`` …), each
a presigned GET URL of the job's object in the tenant bucket. URLs never go anywhere else: not
in status (which carries only the Secret's name, the file names and the expiry), not in
annotations, Events, logs or lifecycle events. Setting the annotation
``tabular.aumos.io/refresh-download`` to a new value renews the URLs (docs/api.md).

Files offered: the top-level objects of the job's store except what only stages read
(``model.pkl``, ``analysis.json``, ``stages/…``): the synthetic table(s), ``report.json``,
``report.html`` and ``constraints.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from tabular_operator.manifests import child_name
from tabular_runner.spec import API_GROUP

SUFFIX = "download"
REFRESH_ANNOTATION = f"{API_GROUP}/refresh-download"
"""Set (to any new value) on a SynthesisJob to renew its download URLs."""
EXPIRES_ANNOTATION = f"{API_GROUP}/expires-at"
"""On the download Secret: when its URLs stop working (RFC 3339, UTC)."""
MAX_TTL_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs live at most 7 days."""
INTERNAL = frozenset({"model.pkl", "analysis.json"})
"""Objects only stages read: never offered for download."""
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_NAME_LIMIT = 253


def secret_name(job_name: str) -> str:
    """``<job>-download``, shortened with a hash of the job name past 253 characters."""
    return child_name(job_name, SUFFIX, _NAME_LIMIT)


def files(keys: Iterable[str]) -> list[str]:
    """The downloadable files among the keys under a job's store (relative keys), sorted."""
    return sorted(
        {
            key
            for key in keys
            if "/" not in key and key not in INTERNAL and _SECRET_KEY.match(key) is not None
        }
    )


def ttl_seconds(snapshot_spec: Mapping[str, Any] | None, default: int) -> int:
    """The job's ``spec.output.downloadTtlSeconds``, else ``default``; within 1 s … 7 days."""
    output = (snapshot_spec or {}).get("output") or {}
    value = output.get("downloadTtlSeconds") or default
    return max(1, min(int(value), MAX_TTL_SECONDS))


def stamp(moment: datetime) -> str:
    """RFC 3339 UTC, seconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def expires_at(now: datetime, ttl: int) -> str:
    """When URLs presigned at ``now`` for ``ttl`` seconds expire."""
    return stamp(now + timedelta(seconds=ttl))


def status(name: str, names: list[str], expiry: str, refresh: str | None) -> dict[str, Any]:
    """``status.download``: where the URLs are and until when (never a URL)."""
    out: dict[str, Any] = {"secretName": name, "files": names, "expiresAt": expiry}
    if refresh is not None:
        out["refreshedFor"] = refresh
    return out
