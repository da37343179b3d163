"""The results store: SQLAlchemy schema and queries, exchange formats."""
