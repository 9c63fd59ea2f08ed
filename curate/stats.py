"""DuckDB over a run's output: the views ``docs``, ``rejects``, ``stats`` and ``timing``, and the funnel.

    curate sql out/ "SELECT lang, count(*) FROM docs GROUP BY lang"
    curate stats out/ --db out.duckdb        # then: duckdb out.duckdb

Shards of different sources carry different columns (WARC metadata, code
signals ...), so the views read them with ``union_by_name``.
"""

from __future__ import annotations

import glob
import json
import os

import duckdb

from curate.execute import STATS_SCHEMA
from curate.params import ConfigError
from curate import storage
from curate.remote import exists as remote_exists, is_remote

VIEWS = ("docs", "rejects", "stats", "timing")
#: A view's folder under the output, where it is not the view's name: each run's own steps (curate.timing).
FOLDERS = {"timing": "stats/timing"}


def _empty_select(name: str) -> str:
    if name in ("stats", "timing"):
        from curate.timing import TIMING_SCHEMA

        schema = STATS_SCHEMA if name == "stats" else TIMING_SCHEMA
        columns = ", ".join(f"NULL::{_duck_type(f.type)} AS {f.name}" for f in schema)
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


class NotAnOutput(ConfigError):
    """A folder that is not a curate output (no manifest.json), or a database path that cannot be one."""


def view_sql(output: str, name: str, relative_to: str | None = None) -> str:
    """The view over ``output/name/*.parquet``: absolute, or relative to the folder ``relative_to``;
    an output in an object store (``s3://...``) is read there (``connect`` registers its filesystem)."""
    folder = FOLDERS.get(name, name)
    if is_remote(output):
        pattern = output.rstrip("/") + f"/{folder}/*.parquet"
        if not storage.glob(pattern):  # listings are not cached: a run may have just written these
            return _empty_select(name)
        escaped = pattern.replace("'", "''")
        return f"SELECT * FROM read_parquet('{escaped}', union_by_name = true)"
    pattern = os.path.join(os.path.abspath(output), *folder.split("/"), "*.parquet")
    if not glob.glob(pattern):
        return _empty_select(name)
    if relative_to is not None:
        pattern = os.path.relpath(pattern, relative_to)
    escaped = pattern.replace("'", "''")
    return f"SELECT * FROM read_parquet('{escaped}', union_by_name = true)"


MANIFEST = "manifest.json"


def read_manifest(output: str) -> dict:
    """The manifest of the curate run in ``output`` (a folder, or an object-store prefix such as
    ``s3://bucket/run/``); a one-line ``NotAnOutput`` naming the path when it is not one.

    The one "is this a curate run" check of the commands that read a run (``curate stats``, ``sql``,
    ``card``, ``dashboard``): a run is wherever ``curate run --output`` wrote its ``manifest.json``.
    What each command needs beyond that (a finished run, finished tasks) it checks itself.
    """
    if not is_remote(output) and not os.path.isdir(output):
        why = "not a folder" if os.path.exists(output) else "no such folder"
        raise NotAnOutput(f"not a curate output ({why}); give the folder `curate run --output` wrote", file=output)
    manifest_path = storage.join(output, MANIFEST)
    # remote: the store's errors (no credentials, no bucket, no answer) as one line, from curate.remote
    if not (remote_exists(manifest_path) if is_remote(output) else os.path.isfile(manifest_path)):
        raise NotAnOutput("not a curate output (no manifest.json there); give the folder `curate run --output` "
                          "wrote", file=output)
    try:
        manifest = storage.read_json(manifest_path)
    except json.JSONDecodeError as err:
        raise NotAnOutput(f"not valid JSON (line {err.lineno}: {err.msg})", file=manifest_path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise NotAnOutput(f"cannot read ({type(err).__name__}: {err})", file=manifest_path) from None
    if not isinstance(manifest, dict):
        raise NotAnOutput("expected a JSON object", file=manifest_path)
    return manifest


def check_output(output: str) -> None:
    """``output`` is a curate run (see ``read_manifest``)."""
    read_manifest(output)


def connect(output: str, database: str = ":memory:", *, relative: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the run's views defined (``relative``: paths relative to the database file)."""
    check_output(output)
    con = duckdb.connect(database)
    if is_remote(output):
        # DuckDB's own httpfs extension is downloaded at run time (impossible offline, and one more thing
        # for every node to fetch); the store's fsspec client, with the user's credentials, reads instead
        storage.register_duckdb(con, output)
    base = os.path.dirname(os.path.abspath(database)) if relative else None
    if base is not None:  # views are checked when created: resolve their relative paths as a reader will
        con.execute("SET file_search_path = ?", [base])
    for name in VIEWS:
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {view_sql(output, name, base)}")
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
        GROUP BY source, lang ORDER BY source, sum(kept) + sum(rejected) DESC, lang  -- ties in a fixed order
    """).fetchall()


#: Bytes 8-11 of a DuckDB database file.
DUCKDB_MAGIC = b"DUCK"


def write_database(output: str, database: str) -> None:
    """A DuckDB file whose views read the run's Parquet by paths relative to the database file's folder.

    Relative, so that the database keeps working when the output folder moves with it (a database kept
    inside the output folder, or beside it): DuckDB resolves them from the working directory, so it is
    opened from its own folder (``cd OUT && duckdb run.duckdb``). A database elsewhere, or after a move
    that separated the two, is refreshed by running ``curate stats OUT --db FILE`` again.

    A run in an object store (``s3://bucket/run/``) gets a local database file whose views read the
    store's URLs (``read_parquet('s3://bucket/run/docs/*.parquet')``): nothing is copied down. The
    views are checked here through curate's registered filesystem; a DuckDB shell reads them with its
    ``httpfs`` extension and a secret for the store (``CREATE SECRET (TYPE s3, PROVIDER credential_chain)``),
    Python through ``con.register_filesystem`` of the same fsspec client curate uses.
    """
    if is_remote(database):
        raise NotAnOutput("the database is a local file (DuckDB writes it in place); give a local path such as "
                          "run.duckdb", file=database, key="--db")
    check_output(output)
    folder = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(folder):
        raise NotAnOutput(f"no such folder: {folder}", file=database, key="--db")
    if os.path.isdir(database):
        raise NotAnOutput("is a folder; give a file name such as run.duckdb", file=database, key="--db")
    if os.path.exists(database):
        try:
            with open(database, "rb") as f:
                head = f.read(12)
        except OSError as err:
            raise NotAnOutput(f"cannot read it: {err.strerror}", file=database, key="--db") from None
        if head[8:12] != DUCKDB_MAGIC:
            raise NotAnOutput("exists and is not a DuckDB database; not replacing it", file=database, key="--db")
        try:
            os.remove(database)
        except OSError as err:
            raise NotAnOutput(f"cannot replace it: {err.strerror}", file=database, key="--db") from None
    try:
        con = connect(output, database, relative=True)
    except duckdb.Error as err:
        raise NotAnOutput(f"cannot write it: {str(err).splitlines()[0]}", file=database, key="--db") from None
    con.close()


def renamed_ids(con: duckdb.DuckDBPyConnection) -> int:
    """Documents that got a new id because their given id named another document too (``given_id``)."""
    total = 0
    for name in ("docs", "rejects"):
        columns = [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()]
        if "given_id" in columns:
            total += con.execute(f"SELECT count(given_id) FROM {name}").fetchone()[0]
    return total


def empty_inputs(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(source, path) of the input files that yielded no record at all: empty, or not of their format."""
    return con.execute("""
        SELECT source, path FROM stats WHERE stage = 'read' AND segment = 0
        GROUP BY source, path HAVING sum(docs_in) = 0 ORDER BY source, path
    """).fetchall()


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
