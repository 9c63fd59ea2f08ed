"""The report's numbers: named DuckDB queries over a run's Parquet, its token stats and its mixture.

Every function takes a DuckDB connection with the run's views (``curate.stats.connect``: ``docs``,
``rejects``, ``stats``) and returns small aggregates: histograms, counts per group, a handful of
sample rows. No query brings every document into Python, so the report of a 10-million-document
run costs a few column scans (docs/dashboard.md has the figures).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import duckdb

from curate.dashboards.signals import Signal

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
           "FLOAT", "DOUBLE", "REAL")


def quote(name: str) -> str:
    """A column name as a DuckDB identifier (column names come from Parquet files)."""
    return '"' + name.replace('"', '""') + '"'


def columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    """Column name -> DuckDB type of a view."""
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {view}").fetchall()}


def is_numeric(duck_type: str) -> bool:
    return duck_type.upper() in NUMERIC or duck_type.upper().startswith("DECIMAL")


# ---- funnel and reasons ---------------------------------------------------------------------------

def reasons(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, int]]:
    """(stage, reason, kind, docs) over the whole run from the stats files, most documents first.

    From ``stats`` rather than ``rejects``: skips (records a reader passes over on purpose) are
    counted there only, and the stats are a few rows per task whatever the run's size.
    """
    return con.execute("""
        SELECT stage, r.reason, r.kind, sum(r.docs)::BIGINT AS docs
        FROM (SELECT stage, unnest(reasons) AS r FROM stats)
        GROUP BY ALL HAVING sum(r.docs) > 0 ORDER BY docs DESC, stage, r.reason
    """).fetchall()


def stage_order(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Stages in pipeline order (segment, then position), as the stats record them."""
    return [row[0] for row in con.execute(
        "SELECT stage FROM stats GROUP BY stage ORDER BY min(segment), min(position), stage").fetchall()]


# ---- signals ----------------------------------------------------------------------------------------

@dataclass
class Histogram:
    """Counts of one signal in equal bins, split kept / rejected by its stage / rejected later."""

    signal: Signal
    transform: str               # "identity" or "log10" (bins over log10(max(x, 1)))
    lo: float
    width: float
    bins: int
    counts: dict[str, list[int]] = field(default_factory=dict)
    total: int = 0
    clipped: int = 0              # values beyond the drawn range, counted in the last bin

    def centers(self) -> list[float]:
        return [self.lo + (i + 0.5) * self.width for i in range(self.bins)]


GROUPS = ("kept", "rejected here", "rejected later")


def signal_histograms(con: duckdb.DuckDBPyConnection, signals: list[Signal], bins: int,
                      marks: dict[str, list[float]]) -> list[Histogram]:
    """One histogram per signal column present in the run (docs or rejects).

    Ranges: ratios over [0, 1]; counts in decades (log10); other signals from their minimum to their
    99.5th percentile (the long tail lands in the last bin). Every active threshold of the signal
    (``marks``) is kept inside the drawn range so its line is always on the chart.
    """
    doc_cols = {c: t for c, t in columns(con, "docs").items() if is_numeric(t)}
    rej_cols = {c: t for c, t in columns(con, "rejects").items() if is_numeric(t)}
    present = [s for s in signals if s.column in doc_cols or s.column in rej_cols]
    if not present:
        return []
    ranges = _ranges(con, present, doc_cols, rej_cols)
    out = []
    for s in present:
        lo, hi, total = ranges[s.column]
        if not total:
            continue
        transform = "log10" if s.scale == "log" else "identity"
        to_axis = (lambda v: math.log10(max(v, 1.0))) if transform == "log10" else (lambda v: v)
        points = [to_axis(v) for v in marks.get(s.column, [])]
        if s.scale == "ratio":
            lo, hi = min(0.0, lo), max(1.0, hi) if hi <= 1.0 else hi
        elif s.scale == "log":
            lo, hi = 0.0, math.ceil(max(to_axis(hi), 1.0) * 2) / 2
        lo, hi = min([lo, *points]), max([hi, *(p * 1.02 for p in points)])
        if hi <= lo:
            hi = lo + 1.0
        width = (hi - lo) / bins
        hist = Histogram(s, transform, lo, width, bins, {g: [0] * bins for g in GROUPS}, int(total))
        value = f"log10(greatest({quote(s.column)}::DOUBLE, 1))" if transform == "log10" else f"{quote(s.column)}::DOUBLE"
        parts = []
        if s.column in doc_cols:
            parts.append(f"SELECT {value} AS x, 0 AS g FROM docs WHERE {quote(s.column)} IS NOT NULL")
        if s.column in rej_cols:
            parts.append(f"SELECT {value} AS x, CASE WHEN reject_stage = $stage THEN 1 ELSE 2 END AS g FROM rejects "
                         f"WHERE {quote(s.column)} IS NOT NULL")
        rows = con.execute(f"""
            SELECT g, least(greatest(floor((x - $lo) / $width), 0), $bins - 1)::INTEGER AS b, count(*),
                   count(*) FILTER (WHERE x > $hi)
            FROM ({' UNION ALL '.join(parts)}) WHERE isfinite(x) GROUP BY ALL
        """, {"lo": lo, "width": width, "bins": bins, "hi": hi} | ({"stage": s.stage} if s.column in rej_cols else {})
        ).fetchall()
        for group, b, count, beyond in rows:
            hist.counts[GROUPS[group]][b] += count
            hist.clipped += beyond
        out.append(hist)
    return out


def _ranges(con, present: list[Signal], doc_cols: dict, rej_cols: dict) -> dict[str, tuple[float, float, int]]:
    """min, 99.5th percentile and count of each signal, one scan of each view for all of them."""
    found: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for view, cols in (("docs", doc_cols), ("rejects", rej_cols)):
        names = [s.column for s in present if s.column in cols]
        if not names:
            continue
        select = ", ".join(
            f"min({quote(c)}::DOUBLE), approx_quantile({quote(c)}::DOUBLE, 0.995), count({quote(c)})" for c in names)
        row = con.execute(f"SELECT {select} FROM {view}").fetchone()
        for i, c in enumerate(names):
            lo, hi, n = row[3 * i: 3 * i + 3]
            if n:
                found[c].append((float(lo), float(hi), int(n)))
    return {c: (min(r[0] for r in rs), max(r[1] for r in rs), sum(r[2] for r in rs)) for c, rs in found.items()}


# ---- dedup and PII ----------------------------------------------------------------------------------

def dedup_clusters(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int, int]]:
    """(cluster size, clusters of that size, documents in them) over clusters of two or more.

    Every member of a cluster carries its size, kept copy and removed ones alike, so the clusters of
    size s are the members of size s divided by s.
    """
    parts = [f"SELECT dup_cluster_size AS size FROM {view} WHERE dup_cluster_size > 1"
             for view in ("docs", "rejects") if "dup_cluster_size" in columns(con, view)]
    if not parts:
        return []
    return con.execute(f"""
        SELECT size, (count(*) // size)::BIGINT AS clusters, count(*)::BIGINT AS docs
        FROM ({' UNION ALL '.join(parts)}) GROUP BY size ORDER BY size
    """).fetchall()


PII_TYPES = ("email", "ip", "phone", "card", "cn_id", "iban")


def pii_counts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """(source, type, placeholders written) over kept documents: what the ``pii`` stage replaced."""
    present = [t for t in PII_TYPES if f"pii_{t}" in columns(con, "docs")]
    if not present:
        return []
    select = ", ".join(f"coalesce(sum(pii_{t}), 0)::BIGINT" for t in present)
    rows = con.execute(f"SELECT source, {select} FROM docs GROUP BY source ORDER BY source").fetchall()
    return [(row[0], t, row[1 + i]) for row in rows for i, t in enumerate(present)]


# ---- samples ----------------------------------------------------------------------------------------

def sample_rejects(con: duckdb.DuckDBPyConnection, output: str, per_reason: int, chars: int, max_reasons: int,
                   signal_columns: dict[str, list[str]]) -> dict[tuple[str, str], list[dict]]:
    """A few rejected documents per (stage, reason), chosen by a hash of their id (stable across builds).

    Two steps so that no document's text is read unless it is shown: pick (file, row) pairs reading
    only the id and reason columns, then read those rows of those files (DuckDB skips the other row
    groups by ``file_row_number``). Texts are cut to ``chars`` characters in SQL.
    """
    import glob
    import os

    pattern = os.path.join(os.path.abspath(output), "rejects", "*.parquet")
    if not glob.glob(pattern):
        return {}
    picked = con.execute("""
        SELECT reject_stage, reject_reason, count(*) AS docs,
               min_by({'file': filename, 'row': file_row_number}, hash(id), $k) AS rows
        FROM read_parquet($pattern, filename = true, file_row_number = true, union_by_name = true)
        GROUP BY ALL ORDER BY docs DESC, reject_stage, reject_reason LIMIT $reasons
    """, {"pattern": pattern, "k": per_reason, "reasons": max_reasons}).fetchall()
    wanted: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for stage, reason, _, rows in picked:
        for row in rows:
            wanted[row["file"]].append((row["row"], stage, reason))
    out: dict[tuple[str, str], list[dict]] = {(stage, reason): [] for stage, reason, _, _ in picked}
    for file, rows in wanted.items():
        present = columns(con, f"(SELECT * FROM read_parquet({_literal(file)}))")
        extra = sorted({c for _, stage, _ in rows for c in signal_columns.get(stage, []) if c in present})
        base = [c for c in ("id", "source", "url", "path", "lang") if c in present]
        select = ", ".join([quote(c) for c in base + extra] +
                           ([f"substr({quote('text')}, 1, $chars) AS text", f"length({quote('text')}) AS text_chars"]
                            if "text" in present else []))
        found = con.execute(f"""
            SELECT file_row_number, {select} FROM read_parquet($file, file_row_number = true)
            WHERE file_row_number IN (SELECT unnest($rows))
        """, {"file": file, "rows": [r for r, _, _ in rows], "chars": chars}).fetchall()
        names = ["row", *base, *extra] + (["text", "text_chars"] if "text" in present else [])
        by_row = {r[0]: dict(zip(names, r)) for r in found}
        for row, stage, reason in rows:
            record = by_row.get(row)
            if record is not None:
                record["signals"] = {c: record.pop(c) for c in extra if c in signal_columns.get(stage, [])}
                for c in extra:
                    record.pop(c, None)
                out[(stage, reason)].append(record)
    for key in out:
        out[key].sort(key=lambda r: r.get("id") or "")
    return out


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reject_counts(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    return {(s, r): n for s, r, n in con.execute(
        "SELECT reject_stage, reject_reason, count(*) FROM rejects GROUP BY ALL").fetchall()}


# ---- tokens and mixture -----------------------------------------------------------------------------

def tokens_by_source(con: duckdb.DuckDBPyConnection, stats_glob: str) -> list[tuple[str, str, int, int, int]]:
    """(source, language, documents, tokens, bytes) from a token folder's ``stats/*.parquet``."""
    return con.execute("""
        SELECT source, coalesce(lang, '?') AS lang, sum(docs)::BIGINT, sum(tokens)::BIGINT, sum(bytes)::BIGINT
        FROM read_parquet($glob, union_by_name = true) GROUP BY ALL ORDER BY source, sum(tokens) DESC
    """, {"glob": stats_glob}).fetchall()


def mixture_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[dict]:
    """One dict per component of ``MIX/mixture.parquet``, in the file's order."""
    cursor = con.execute("SELECT * FROM read_parquet($t)", {"t": table})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
