"""The privacy-budget ledger: caps, allocations, and an append-only audit trail.

Units (docs/adr/0005-budget-ledger.md): ε as integer micro-ε (``round(ε·10⁶)``), δ as integer
``round(δ·10¹²)``. Every row carries ``tenant_id`` (the namespace); every query filters by it.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the three ledger tables."""
    op.create_table(
        "tab_budget_caps",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("dataset", sa.Text, nullable=True),
        sa.Column("epsilon_micro", sa.BigInteger, nullable=False),
        sa.Column("delta_scaled", sa.BigInteger, nullable=False),
        sa.Column("period", sa.Text, nullable=False, server_default="none"),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_tab_budget_caps_tenant_name"),
        sa.CheckConstraint("epsilon_micro >= 0 AND delta_scaled >= 0", name="ck_caps_amounts"),
        sa.CheckConstraint(
            "period IN ('none', 'daily', 'weekly', 'monthly', 'yearly')", name="ck_caps_period"
        ),
    )
    op.create_table(
        "tab_budget_allocations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("dataset", sa.Text, nullable=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("epsilon_micro", sa.BigInteger, nullable=False),
        sa.Column("delta_scaled", sa.BigInteger, nullable=False),
        sa.Column("consumed_micro", sa.BigInteger, nullable=True),
        sa.Column("state", sa.Text, nullable=False, server_default="allocated"),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("settled_at", _TS, nullable=True),
        sa.UniqueConstraint("tenant_id", "key", name="uq_tab_budget_allocations_tenant_key"),
        sa.CheckConstraint(
            "state IN ('allocated', 'consumed', 'released')", name="ck_allocations_state"
        ),
        sa.CheckConstraint(
            "epsilon_micro >= 0 AND delta_scaled >= 0", name="ck_allocations_amounts"
        ),
        # Settled exactly when consumed or released; consumed never above the allocation.
        sa.CheckConstraint(
            "(state = 'allocated') = (settled_at IS NULL)"
            " AND (state = 'consumed') = (consumed_micro IS NOT NULL)"
            " AND (consumed_micro IS NULL OR consumed_micro BETWEEN 0 AND epsilon_micro)",
            name="ck_allocations_settlement",
        ),
    )
    op.create_index(
        "ix_tab_budget_allocations_tenant_created",
        "tab_budget_allocations",
        ["tenant_id", "created_at"],
    )
    op.create_table(
        "tab_budget_audit",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("allocation_id", sa.Uuid, nullable=True),
        sa.Column("cap_name", sa.Text, nullable=True),
        sa.Column("dataset", sa.Text, nullable=True),
        sa.Column("epsilon_micro", sa.BigInteger, nullable=True),
        sa.Column("delta_scaled", sa.BigInteger, nullable=True),
        sa.Column("job_key", sa.Text, nullable=True),
        sa.Column("at", _TS, nullable=False),
        sa.CheckConstraint(
            "op IN ('allocate', 'consume', 'release', 'set_cap', 'remove_cap')",
            name="ck_audit_op",
        ),
    )
    op.create_index("ix_tab_budget_audit_tenant_at", "tab_budget_audit", ["tenant_id", "at"])
    # Append-only: the trail cannot be edited or trimmed, even by the operator's own role.
    op.execute(
        """
        CREATE FUNCTION tab_budget_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'tab_budget_audit is append-only (% refused)', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER tab_budget_audit_append_only BEFORE UPDATE OR DELETE ON tab_budget_audit"
        " FOR EACH ROW EXECUTE FUNCTION tab_budget_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER tab_budget_audit_no_truncate BEFORE TRUNCATE ON tab_budget_audit"
        " FOR EACH STATEMENT EXECUTE FUNCTION tab_budget_audit_append_only()"
    )


def downgrade() -> None:
    """Drop the ledger (its history with it)."""
    op.execute("DROP TRIGGER IF EXISTS tab_budget_audit_no_truncate ON tab_budget_audit")
    op.execute("DROP TRIGGER IF EXISTS tab_budget_audit_append_only ON tab_budget_audit")
    op.execute("DROP FUNCTION IF EXISTS tab_budget_audit_append_only()")
    op.drop_table("tab_budget_audit")
    op.drop_table("tab_budget_allocations")
    op.drop_table("tab_budget_caps")
