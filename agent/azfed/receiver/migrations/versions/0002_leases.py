"""Leases: which receiver runs the once-per-cloud work (reconciliation, cleaning, pruning).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

Expand only: a new table. A receiver of the previous release ignores it (and runs
reconciliation as before) until it is upgraded.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "azfed_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("azfed_leases")
