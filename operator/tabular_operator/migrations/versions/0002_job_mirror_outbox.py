"""The SynthesisJob mirror and the lifecycle outbox (DESIGN §5; docs/operator.md).

``tab_generation_jobs``: one row per job (``uid``), the latest phase and its status fields, and
``seq``, the number of transitions applied. ``tab_outbox``: one row per applied transition,
written in the same transaction as the mirror row, relayed to Kafka and then marked
``sent_at``. Every row carries ``tenant_id`` (the namespace).

``tab_phase_rank(phase)`` orders the phases (QUEUED 0 … VALIDATING 3, COMPLETE and FAILED 4):
the mirror's upsert applies a transition only when it raises the rank, so a stale or replayed
write never moves a phase backwards and a terminal phase never changes.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_TS = sa.DateTime(timezone=True)
_PHASES = "('QUEUED', 'TRAINING', 'GENERATING', 'VALIDATING', 'COMPLETE', 'FAILED')"


def upgrade() -> None:
    """Create the mirror, the outbox and the phase-rank function."""
    op.execute(
        """
        CREATE FUNCTION tab_phase_rank(phase text) RETURNS integer
        LANGUAGE sql IMMUTABLE STRICT AS $$
            SELECT CASE phase
                WHEN 'QUEUED' THEN 0 WHEN 'TRAINING' THEN 1 WHEN 'GENERATING' THEN 2
                WHEN 'VALIDATING' THEN 3 WHEN 'COMPLETE' THEN 4 WHEN 'FAILED' THEN 4
            END
        $$
        """
    )
    op.create_table(
        "tab_generation_jobs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("uid", sa.Text, nullable=False, unique=True),
        sa.Column("generator", sa.Text, nullable=True),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("stage", sa.Text, nullable=True),
        sa.Column("training_time_s", sa.Float, nullable=True),
        sa.Column("generation_time_s", sa.Float, nullable=True),
        sa.Column("rows", sa.BigInteger, nullable=True),
        sa.Column("fidelity_score", sa.Float, nullable=True),
        sa.Column("privacy_score", sa.Float, nullable=True),
        sa.Column("privacy_risk", sa.Float, nullable=True),
        sa.Column("epsilon_spent", sa.Float, nullable=True),
        sa.Column("allocation_id", sa.Text, nullable=True),
        sa.Column("output_uri", sa.Text, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(f"phase IN {_PHASES}", name="ck_generation_jobs_phase"),
        sa.CheckConstraint("seq >= 1", name="ck_generation_jobs_seq"),
    )
    op.create_index(
        "ix_tab_generation_jobs_tenant_name", "tab_generation_jobs", ["tenant_id", "name"]
    )
    op.create_table(
        "tab_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("job_uid", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("sent_at", _TS, nullable=True),
        sa.UniqueConstraint("job_uid", "seq", name="uq_tab_outbox_job_seq"),
    )
    # What the relay reads: unsent rows of a tenant, in insertion order.
    op.create_index(
        "ix_tab_outbox_unsent",
        "tab_outbox",
        ["tenant_id", "id"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    """Drop the outbox and the mirror."""
    op.drop_table("tab_outbox")
    op.drop_table("tab_generation_jobs")
    op.execute("DROP FUNCTION IF EXISTS tab_phase_rank(text)")
