"""Alembic environment: migrate the database named by shared.config, online only."""

from alembic import context
from sqlalchemy import create_engine, pool

from shared.config import get_settings
from shared.models import Base

config = context.config
if config.config_file_name and not config.attributes.get("skip_logging"):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url") or get_settings().database_url
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
