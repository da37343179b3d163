"""Cell keys join list parameters by commas (``epsilons=0,16``; key format 2): keys stored in
format 1 (``epsilons=0x16``, no ``key_format`` mark in ``dlbench_meta``) are recomputed from each
row's stored cell, once."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dlbench.cell import Cell

revision = "0002"
down_revision = "0001"

KEY_FORMAT = "2"


def upgrade() -> None:
    c = op.get_bind()
    meta = sa.table("dlbench_meta", sa.column("name", sa.String), sa.column("value", sa.String))
    cells = sa.table("cells", sa.column("id", sa.Integer), sa.column("key", sa.String), sa.column("cell", sa.JSON))
    mark = c.execute(sa.select(meta.c.value).where(meta.c.name == "key_format")).scalar()
    if mark == KEY_FORMAT:
        return
    for cid, key, cell in c.execute(sa.select(cells.c.id, cells.c.key, cells.c.cell)).all():
        try:
            new = Cell.from_dict(cell).key if cell else key
        except (KeyError, TypeError, ValueError):
            new = key
        if new != key:
            c.execute(sa.update(cells).where(cells.c.id == cid).values(key=new))
    if mark is None:
        c.execute(sa.insert(meta).values(name="key_format", value=KEY_FORMAT))
    else:
        c.execute(sa.update(meta).where(meta.c.name == "key_format").values(value=KEY_FORMAT))
