"""The receiver's tables as azfed created them before it used migrations.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

A SQLite file an older azfed created (no alembic_version table) is stamped at this revision
before upgrading. Times are DOUBLE, not FLOAT: MySQL's FLOAT is single precision, a 2026 epoch
time in it is off by up to a minute (SQLite stores both as REAL, so old files match).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Case- and trailing-space-sensitive keys on MySQL/MariaDB, whose default collations are not.
MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "azfed_reports",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answer", sa.JSON),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double),
        **MYSQL,
    )
    op.create_table(
        "azfed_agents",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_report_at", sa.Double, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "azfed_instances",
        sa.Column("instance_uuid", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("remote_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ips", sa.JSON, nullable=False),
        sa.Column("observed_at", sa.String(40), nullable=False),
        sa.Column("received_at", sa.Double, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "azfed_orphans",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("first_seen", sa.Double, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "azfed_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        **MYSQL,
    )
    op.create_table(
        "azfed_dropped",
        sa.Column("sink", sa.String(32), primary_key=True),
        sa.Column("resource_id", sa.String(255), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("samples", sa.BigInteger, nullable=False),
        sa.Column("first_seen", sa.Double, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
        **MYSQL,
    )


def downgrade() -> None:
    for table in ("azfed_dropped", "azfed_audit", "azfed_orphans", "azfed_instances",
                  "azfed_agents", "azfed_reports"):  # fmt: skip
        op.drop_table(table)
