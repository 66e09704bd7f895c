"""Alembic's environment for the receiver's schema: always run by azfed.receiver.migrate
on a connection it opened (online, in its transaction), never from an alembic.ini."""

from __future__ import annotations

from alembic import context
from azfed.receiver.store import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    # SQLite alters a table by copying it: batch operations do that for it
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
