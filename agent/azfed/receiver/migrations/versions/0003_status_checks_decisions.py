"""Instances' status checks, and the scheduler filter's decisions kept for the dashboard.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Expand only: a nullable column and a new table. A receiver of the previous release writes
instance rows without the column (the Public cloud tab then shows the checks of the last report
a receiver of this release wrote, or none) and keeps no decisions, until it is upgraded.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.add_column("azfed_instances", sa.Column("status_checks", sa.String(16), nullable=True))
    op.create_table(
        "azfed_decisions",
        sa.Column("at", sa.Double, primary_key=True),
        sa.Column("instance_uuid", sa.String(64), primary_key=True),
        sa.Column("doc", sa.JSON, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("azfed_decisions")
    # SQLite drops a column only by copying the table: batch mode does that
    with op.batch_alter_table("azfed_instances") as batch:
        batch.drop_column("status_checks")
