"""The public AZs' capacity events, which the proxy hosts' drivers report and the scheduler's
filter reads (GET /v1/capacity-events).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Expand only: a new table. A receiver of the previous release has no such endpoint (a driver's
POST gets a 404, logged on the proxy host, and the boot goes on) until it is upgraded.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "azfed_capacity_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("writer_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("az", sa.String(255), nullable=False),
        sa.Column("flavor", sa.String(255), nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        sa.UniqueConstraint("writer_id", "key", name="uq_azfed_capacity_events_key"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("azfed_capacity_events")
