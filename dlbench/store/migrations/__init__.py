"""The store's Alembic migrations (env.py and versions/), run programmatically by
:func:`dlbench.store.schema.upgrade`; no alembic.ini is needed."""
