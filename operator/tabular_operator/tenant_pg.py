"""Reading the operator database as one tenant, under row-level security (ADR 0006).

Migration ``0003`` enables row-level security on every table with a ``tenant_id``. The
operator's role owns the tables and is exempt; any other role (a member of ``tab_tenant``, which
holds SELECT) sees only the rows whose ``tenant_id`` equals the setting ``aumos.tenant_id`` of
its transaction, and no row at all while the setting is missing or empty. :func:`tenant_session`
opens such a transaction; a reader without Python runs the same statement itself::

    BEGIN;
    SELECT set_config('aumos.tenant_id', 'team-a', true);   -- SET LOCAL, as a bound value
    SELECT … FROM tab_generation_jobs;                      -- team-a's rows only
    COMMIT;

The value is passed as a bound parameter, never spliced into SQL, and must be a Kubernetes
namespace name (the tenant id): anything else is refused before the database is asked, and
would match no row if it got there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

TENANT_SETTING = "aumos.tenant_id"
"""The setting the row-level security policies compare ``tenant_id`` with."""
READER_ROLE = "tab_tenant"
"""The NOLOGIN role granted SELECT on the tenant tables; readers' login roles are its members."""
TENANT_TABLES = (
    "tab_budget_caps",
    "tab_budget_allocations",
    "tab_budget_audit",
    "tab_generation_jobs",
    "tab_outbox",
    "tab_generation_profiles",
    "tab_multi_table_schemas",
)
"""Every table under row-level security."""

# A Kubernetes namespace name (RFC 1123 label): what every tenant_id is.
_TENANT = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SET = text("SELECT set_config(:setting, :tenant, true)")


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a namespace name.

    Raises:
        ValueError: not a namespace name (lowercase letters, digits and '-', at most 63).
    """
    if not isinstance(tenant, str) or _TENANT.fullmatch(tenant) is None:
        raise ValueError(
            f"tenant {tenant!r}: not a namespace name (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return tenant


@contextmanager
def tenant_session(engine: Engine, tenant: str) -> Iterator[Connection]:
    """A transaction on ``engine`` that reads as ``tenant`` (committed when the block ends).

    The setting is transaction-local (``set_config(…, true)``), so a pooled connection carries
    nothing into its next use.

    Raises:
        ValueError: ``tenant`` is not a namespace name (nothing was asked of the database).
    """
    check_tenant(tenant)
    with engine.begin() as conn:
        conn.execute(_SET, {"setting": TENANT_SETTING, "tenant": tenant})
        yield conn
