"""Catalog mirrors and row-level security (DESIGN §5; docs/adr/0006-row-level-security.md).

``tab_generation_profiles`` and ``tab_multi_table_schemas``: one row per GenerationProfile or
MultiTableSchema (``uid``), its ``metadata.generation``, the status the operator computed
(``valid``, ``message``, ``used_by``; a schema's ``table_count`` and ``depth``) and its spec.

Row-level security on every table that carries ``tenant_id``: the operator's role owns the
tables and is not subject to it (it writes every tenant; its queries filter by tenant
themselves); every other role reads only the rows of the tenant named by the setting
``aumos.tenant_id`` of its transaction, and nothing without it. ``tab_tenant`` (NOLOGIN) is the
role readers are members of; it gets SELECT on these tables. It is created here when the
migrating role may create roles; otherwise a NOTICE says so and the DBA creates it (ADR 0006).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)
# This revision's tables with tenant rows (a snapshot: later revisions add theirs).
_TENANT_TABLES = (
    "tab_budget_caps",
    "tab_budget_allocations",
    "tab_budget_audit",
    "tab_generation_jobs",
    "tab_outbox",
    "tab_generation_profiles",
    "tab_multi_table_schemas",
)
_POLICY = "tab_tenant_isolation"


def _catalog_table(name: str, *extra: sa.Column[Any]) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("uid", sa.Text, nullable=False, unique=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("valid", sa.Boolean, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("used_by", sa.Integer, nullable=False),
        *extra,
        sa.Column("spec", postgresql.JSONB, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index(f"ix_{name}_tenant_name", name, ["tenant_id", "name"])


def upgrade() -> None:
    """Create the catalog mirrors; enable row-level security; create and grant ``tab_tenant``."""
    _catalog_table("tab_generation_profiles")
    _catalog_table(
        "tab_multi_table_schemas",
        sa.Column("table_count", sa.Integer, nullable=False),
        sa.Column("depth", sa.Integer, nullable=True),
    )
    for table in _TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        # Every role but the owner (and superusers): missing or empty setting -> NULL or ''
        # -> no row. FOR SELECT only: without a write policy, writes by others are refused.
        op.execute(
            f"CREATE POLICY {_POLICY} ON {table} FOR SELECT TO PUBLIC"
            " USING (tenant_id = current_setting('aumos.tenant_id', true))"
        )
    tables = ", ".join(_TENANT_TABLES)
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tab_tenant') THEN
                IF EXISTS (SELECT FROM pg_roles WHERE rolname = current_user
                           AND (rolcreaterole OR rolsuper)) THEN
                    CREATE ROLE tab_tenant NOLOGIN;
                ELSE
                    RAISE NOTICE 'role tab_tenant not created (% may not create roles): '
                        'a DBA runs CREATE ROLE tab_tenant NOLOGIN; GRANT SELECT ON {tables} '
                        'TO tab_tenant (docs/adr/0006-row-level-security.md)', current_user;
                    RETURN;
                END IF;
            END IF;
            GRANT SELECT ON {tables} TO tab_tenant;
        END $$
        """
    )


def downgrade() -> None:
    """Drop the catalog mirrors and the policies (the cluster-wide role stays)."""
    older = _TENANT_TABLES[:5]  # the tables of 0001 and 0002
    op.execute(
        f"""
        DO $$
        BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'tab_tenant') THEN
                REVOKE SELECT ON {", ".join(older)} FROM tab_tenant;
            END IF;
        END $$
        """
    )
    for table in older:
        op.execute(f"DROP POLICY IF EXISTS {_POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.drop_table("tab_multi_table_schemas")
    op.drop_table("tab_generation_profiles")
