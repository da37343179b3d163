"""Baseline: runs, cells, measurements, models and dlbench_meta as dlbench stored them before
the schema had a version. A store from then (no ``alembic_version``) gets only its missing tables."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "runs" not in have:
        op.create_table(
            "runs",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("suite", sa.String(200), nullable=False),
            sa.Column("started_at", sa.Float, nullable=False),
            sa.Column("finished_at", sa.Float),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("git_commit", sa.String(80)),
            sa.Column("environment", sa.JSON),
            sa.Column("config", sa.JSON))
    if "cells" not in have:
        op.create_table(
            "cells",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True, nullable=False),
            sa.Column("key", sa.String(400), index=True, nullable=False),
            sa.Column("scenario", sa.String(60)),
            sa.Column("task", sa.String(60)),
            sa.Column("framework", sa.String(60)),
            sa.Column("device", sa.String(20)),
            sa.Column("params", sa.JSON),
            sa.Column("cell", sa.JSON),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("error", sa.Text),
            sa.Column("log_tail", sa.Text),
            sa.Column("metrics", sa.JSON),
            sa.Column("series", sa.JSON),
            sa.Column("details", sa.JSON),
            sa.Column("environment", sa.JSON),
            sa.Column("started_at", sa.Float),
            sa.Column("duration", sa.Float))
    if "measurements" not in have:
        op.create_table(
            "measurements",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("cell_id", sa.Integer, sa.ForeignKey("cells.id", ondelete="CASCADE"), index=True, nullable=False),
            sa.Column("name", sa.String(80), nullable=False),
            sa.Column("unit", sa.String(40)),
            sa.Column("higher_is_better", sa.Integer),
            *(sa.Column(f, sa.Integer if f == "n" else sa.Float)
              for f in ("n", "median", "mean", "std", "min", "max", "p90", "p99", "iqr", "ci_low", "ci_high")),
            sa.Column("samples", sa.JSON),
            sa.Column("meta", sa.JSON))
    if "models" not in have:
        op.create_table(
            "models",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("cell_id", sa.Integer, sa.ForeignKey("cells.id", ondelete="CASCADE"), index=True, nullable=False),
            sa.Column("spec_digest", sa.String(40)),
            sa.Column("parameter_count", sa.Integer),
            sa.Column("flops_per_example", sa.Integer),
            sa.Column("initial_digest", sa.String(80)),
            sa.Column("trained_digest", sa.String(80)),
            sa.Column("artifact", sa.String(400)))
    if "dlbench_meta" not in have:
        op.create_table(
            "dlbench_meta",
            sa.Column("name", sa.String(60), primary_key=True),
            sa.Column("value", sa.String(200)))
