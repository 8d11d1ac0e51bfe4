"""Alembic environment: migrations run on a connection handed in by `Database.upgrade`."""

from alembic import context

from valuetune.store.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # offline mode: `alembic upgrade --sql` with a URL
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
