"""DuckDB over a run's output: the views ``docs``, ``rejects`` and ``stats``, and the funnel.

    curate sql out/ "SELECT lang, count(*) FROM docs GROUP BY lang"
    curate stats out/ --db out.duckdb        # then: duckdb out.duckdb

Shards of different sources carry different columns (WARC metadata, code
signals ...), so the views read them with ``union_by_name``.
"""

from __future__ import annotations

import glob
import os

import duckdb

from curate.execute import STATS_SCHEMA

VIEWS = ("docs", "rejects", "stats")


def _empty_select(name: str) -> str:
    if name == "stats":
        columns = ", ".join(f"NULL::{_duck_type(f.type)} AS {f.name}" for f in STATS_SCHEMA)
    else:
        columns = "NULL::VARCHAR AS id, NULL::VARCHAR AS source, NULL::VARCHAR AS text, NULL::VARCHAR AS url, " \
                  "NULL::VARCHAR AS path"
        if name == "rejects":
            columns += ", NULL::VARCHAR AS reject_stage, NULL::VARCHAR AS reject_reason"
    return f"SELECT {columns} WHERE false"


def _duck_type(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type):
        return "VARCHAR"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    return "STRUCT(reason VARCHAR, kind VARCHAR, docs BIGINT)[]"


def view_sql(output: str, name: str) -> str:
    pattern = os.path.join(os.path.abspath(output), name, "*.parquet")
    if not glob.glob(pattern):
        return _empty_select(name)
    escaped = pattern.replace("'", "''")
    return f"SELECT * FROM read_parquet('{escaped}', union_by_name = true)"


def connect(output: str, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the run's views defined."""
    if not os.path.isdir(output) or not os.path.exists(os.path.join(output, "manifest.json")):
        raise FileNotFoundError(f"{output}: not a curate output directory (no manifest.json)")
    con = duckdb.connect(database)
    for name in VIEWS:
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {view_sql(output, name)}")
    return con


def funnel(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Per source and stage, in pipeline order: docs and bytes in/out, share kept, top reasons."""
    return con.execute("""
        WITH per_stage AS (
            SELECT source, stage, min(segment) AS segment, min(position) AS position,
                   sum(docs_in) AS docs_in, sum(docs_out) AS docs_out,
                   sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out,
                   sum(rejected) AS rejected, sum(skipped) AS skipped, sum(seconds) AS seconds
            FROM stats GROUP BY source, stage
        ),
        reasons AS (
            SELECT source, stage, r.reason AS reason, r.kind AS kind, sum(r.docs) AS docs
            FROM (SELECT source, stage, unnest(reasons) AS r FROM stats)
            GROUP BY ALL
        ),
        top AS (
            SELECT source, stage,
                   string_agg(reason || ' ' || docs, ', ' ORDER BY docs DESC, reason) AS top_reasons
            FROM (SELECT *, row_number() OVER (PARTITION BY source, stage ORDER BY docs DESC, reason) AS rank
                  FROM reasons)
            WHERE rank <= 3 GROUP BY source, stage
        )
        SELECT p.source, p.stage, p.docs_in, p.docs_out,
               p.bytes_in, p.bytes_out,
               -- from rejects and skips, not docs_out / docs_in: a reader may cut one record into many chunks
               CASE WHEN p.docs_in > 0 THEN 1 - (p.rejected + p.skipped) / p.docs_in ELSE NULL END AS kept_share,
               p.rejected, p.skipped, p.seconds, coalesce(t.top_reasons, '') AS top_reasons
        FROM per_stage p LEFT JOIN top t USING (source, stage)
        ORDER BY p.source, p.segment, p.position
    """).fetchall()


def by_language(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Kept and rejected documents per source and language (from the landed shards)."""
    has_lang = {
        name: "lang" in [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()] for name in ("docs", "rejects")
    }
    lang = {name: "coalesce(lang, '?')" if has_lang[name] else "'?'" for name in has_lang}
    return con.execute(f"""
        SELECT source, lang, sum(kept) AS kept, sum(rejected) AS rejected,
               sum(kept) / (sum(kept) + sum(rejected)) AS kept_share
        FROM (
            SELECT source, {lang['docs']} AS lang, 1 AS kept, 0 AS rejected FROM docs
            UNION ALL
            SELECT source, {lang['rejects']} AS lang, 0, 1 FROM rejects WHERE reject_stage <> 'read'
        )
        GROUP BY source, lang ORDER BY source, sum(kept) + sum(rejected) DESC
    """).fetchall()


def write_database(output: str, database: str) -> None:
    """A DuckDB file whose views point at the run's Parquet (absolute paths: open it from anywhere)."""
    if os.path.exists(database):
        os.remove(database)
    con = connect(output, database)
    con.close()


def stage_errors(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """Rejects caused by a stage or reader raising (``error:...``, ``read-error:...``, ``extract-error:...``).

    They are quarantined, not lost, but many of them usually mean a bug or a broken set-up, not bad data.
    """
    return con.execute("""
        SELECT stage, r.reason, sum(r.docs)::BIGINT AS docs
        FROM (SELECT stage, unnest(reasons) AS r FROM stats)
        WHERE r.reason LIKE 'error:%' OR r.reason LIKE '%-error:%'
        GROUP BY ALL ORDER BY docs DESC
    """).fetchall()
