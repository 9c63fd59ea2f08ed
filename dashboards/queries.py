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
    clipped: int = 0              # 1 when values lie beyond the drawn range (counted in the last bin)

    def centers(self) -> list[float]:
        return [self.lo + (i + 0.5) * self.width for i in range(self.bins)]


GROUPS = ("kept", "rejected here", "rejected later")


@dataclass
class RunProfile:
    """Everything the run's panels draw that needs a pass over the documents, from one pass."""

    histograms: list[Histogram]
    languages: list[tuple[str, str, int, int]]      # source, language, kept, rejected (not by the reader)
    clusters: list[tuple[int, int, int]]            # cluster size, clusters, documents in them
    pii: list[tuple[str, str, int]]                 # source, type, placeholders in kept documents


#: Up to this many sources, PII sums per source are aggregates of the one pass; beyond, a GROUP BY of their own.
MAX_FILTERED_SOURCES = 50

#: A separator that cannot occur in a source name or a language code.
_SEP = "\x1f"


def profile(con: duckdb.DuckDBPyConnection, signals: list[Signal], bins: int, marks: dict[str, list[float]],
            sources: list[str]) -> RunProfile:
    """Signal histograms, languages per source, duplicate cluster sizes and PII counts of a run.

    Signal ranges: ratios over [0, 1]; counts in decades (log10); other signals from their minimum to
    their 99.5th percentile (the long tail lands in the last bin). Every active threshold of a signal
    (``marks``) is kept inside the drawn range so its line is always on the chart.

    Two scans of each view, whatever the number of signals: one for the ranges of the signals that
    need one, then one that computes everything else at once: DuckDB's ``histogram`` aggregate over
    each signal's bin number, split by ``FILTER`` into kept / rejected by the signal's stage /
    rejected later; ``histogram`` of (source, language) and of cluster sizes; PII sums per source.
    """
    doc_all, rej_all = columns(con, "docs"), columns(con, "rejects")
    doc_cols = {c: t for c, t in doc_all.items() if is_numeric(t)}
    rej_cols = {c: t for c, t in rej_all.items() if is_numeric(t)}
    present = [s for s in signals if s.column in doc_cols or s.column in rej_cols]
    # ratios are drawn over [0, 1] whatever their data: only the other signals need a scan for their range
    ranges = _ranges(con, [s for s in present if s.scale != "ratio"], doc_cols, rej_cols)
    hists: list[Histogram] = []
    for s in present:
        if s.scale == "ratio":
            lo, top, hi = 0.0, 1.0, 1.0
        elif s.column in ranges:
            lo, top, hi = ranges[s.column]
        else:
            continue  # no value at all
        transform = "log10" if s.scale == "log" else "identity"
        to_axis = (lambda v: math.log10(max(v, 1.0))) if transform == "log10" else (lambda v: v)
        points = [to_axis(v) for v in marks.get(s.column, [])]
        if s.scale == "ratio":
            lo, hi = min(0.0, lo), (1.0 if top <= 1.0 else hi)
        elif s.scale == "log":
            lo, hi = 0.0, math.ceil(max(to_axis(top), 1.0) * 2) / 2
        lo, hi = min([lo, *points]), max([hi, *(p * 1.02 for p in points)])
        if hi <= lo:
            hi = lo + 1.0
        hist = Histogram(s, transform, lo, (hi - lo) / bins, bins, {g: [0] * bins for g in GROUPS})
        hist.clipped = int(to_axis(top) > hi)
        hists.append(hist)

    def bin_expr(h: Histogram, duck_type: str) -> str:
        column = quote(h.signal.column)
        x = f"log10(greatest({column}::DOUBLE, 1))" if h.transform == "log10" else f"{column}::DOUBLE"
        binned = f"least(greatest(floor(({x} - {h.lo!r}) / {h.width!r}), 0), {h.bins - 1})::SMALLINT"
        # nulls (the stage never saw the row) and, for floats, NaN and infinities have no bin; the test is
        # explicit because greatest(NULL, 1) is 1 in DuckDB
        if duck_type.upper() in ("FLOAT", "DOUBLE", "REAL"):
            return f"CASE WHEN isfinite({column}) THEN {binned} END"
        return f"CASE WHEN {column} IS NOT NULL THEN {binned} END"

    languages: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    sizes: dict[int, int] = defaultdict(int)
    pii_types = [t for t in PII_TYPES if f"pii_{t}" in doc_cols]
    pii: list[tuple[str, str, int]] = []
    for view, cols, all_cols in (("docs", doc_cols, doc_all), ("rejects", rej_cols, rej_all)):
        if not all_cols:
            continue
        aggregates: list[str] = []
        targets: list[tuple] = []   # what each aggregate fills
        for h in hists:
            if h.signal.column not in cols:
                continue
            binned = bin_expr(h, cols[h.signal.column])
            if view == "docs":
                aggregates.append(f"histogram({binned})")
                targets.append(("hist", h, "kept"))
            else:
                stage = _literal(h.signal.stage)
                aggregates += [f"histogram({binned}) FILTER (WHERE reject_stage = {stage})",
                               f"histogram({binned}) FILTER (WHERE reject_stage IS DISTINCT FROM {stage})"]
                targets += [("hist", h, "rejected here"), ("hist", h, "rejected later")]
        lang = "coalesce(lang, '?')" if "lang" in all_cols else "'?'"
        # like `curate stats --by-lang`: records the reader could not use are not documents of a language
        aggregates.append(f"histogram(source || '{_SEP}' || {lang})" +
                          (" FILTER (WHERE reject_stage <> 'read')" if view == "rejects" else ""))
        targets.append(("lang", 0 if view == "docs" else 1))
        if "dup_cluster_size" in cols:
            aggregates.append("histogram(dup_cluster_size) FILTER (WHERE dup_cluster_size > 1)")
            targets.append(("dup",))
        if view == "docs" and pii_types and len(sources) <= MAX_FILTERED_SOURCES:
            for source in sources:
                for t in pii_types:
                    aggregates.append(f"coalesce(sum(pii_{t}) FILTER (WHERE source = {_literal(source)}), 0)")
                    targets.append(("pii", source, t))
        row = con.execute(f"SELECT {', '.join(aggregates)} FROM {view}").fetchone()
        for target, value in zip(targets, row):
            if target[0] == "hist":
                _, h, group = target
                for b, n in (value or {}).items():
                    if b is not None:
                        h.counts[group][int(b)] += int(n)
            elif target[0] == "lang":
                for key, n in (value or {}).items():
                    if key is not None:
                        source, _, code = key.partition(_SEP)
                        languages[(source, code)][target[1]] += int(n)
            elif target[0] == "dup":
                for size, n in (value or {}).items():
                    sizes[int(size)] += int(n)
            elif int(value):
                pii.append((target[1], target[2], int(value)))
    if pii_types and len(sources) > MAX_FILTERED_SOURCES:  # one FILTER per source would be too many aggregates
        sums = ", ".join(f"coalesce(sum(pii_{t}), 0)::BIGINT" for t in pii_types)
        for source, *values in con.execute(f"SELECT source, {sums} FROM docs GROUP BY source ORDER BY source").fetchall():
            pii += [(source, t, int(v)) for t, v in zip(pii_types, values) if v]
    for h in hists:
        h.total = sum(sum(c) for c in h.counts.values())
    by_source: dict[str, list] = defaultdict(list)
    for (source, code), (kept, rejected) in languages.items():
        by_source[source].append((source, code, kept, rejected))
    return RunProfile(
        histograms=[h for h in hists if h.total],
        languages=[row for source in sorted(by_source) for row in sorted(by_source[source], key=lambda r: -(r[2] + r[3]))],
        clusters=[(size, n // size, n) for size, n in sorted(sizes.items())],
        pii=pii,
    )


def signal_histograms(con: duckdb.DuckDBPyConnection, signals: list[Signal], bins: int,
                      marks: dict[str, list[float]]) -> list[Histogram]:
    """Only the signal histograms of ``profile``."""
    return profile(con, signals, bins, marks, []).histograms


#: Above this many rows, percentiles come from a sample of about this many (DuckDB's system sampling
#: reads whole vectors): the range of a plot needs no more, and a t-digest over every row costs seconds.
SAMPLE_ROWS = 500_000


def _ranges(con, present: list[Signal], doc_cols: dict,
            rej_cols: dict) -> dict[str, tuple[float, float, float]]:
    """(min, max, 99.5th percentile) of each signal, over both views.

    One scan of each view for the extremes and counts of all signals; the percentile only for the
    signals drawn on a linear scale from their data (ratios and counts need only their extremes),
    over a sample when the view is large.
    """
    found: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for view, cols in (("docs", doc_cols), ("rejects", rej_cols)):
        mine = [s for s in present if s.column in cols]
        if not mine:
            continue
        parts = []
        for s in mine:
            c = f"{quote(s.column)}::DOUBLE"
            finite = f" FILTER (WHERE isfinite({c}))" if cols[s.column].upper() in ("FLOAT", "DOUBLE", "REAL") else ""
            parts.append(f"min({c}){finite}, max({c}){finite}")
        row = con.execute(f"SELECT count(*), {', '.join(parts)} FROM {view}").fetchone()
        rows, row = row[0], row[1:]
        linear = [s for s in mine if s.scale == "linear"]
        tails: dict[str, float] = {}
        if linear:
            sample = f" USING SAMPLE {min(100.0, 100.0 * SAMPLE_ROWS / rows):.4f}% (system)" if rows > 2 * SAMPLE_ROWS else ""
            select = ", ".join(f"approx_quantile({quote(s.column)}::DOUBLE, 0.995)" for s in linear)
            names = ", ".join(quote(s.column) for s in linear)
            values = con.execute(f"SELECT {select} FROM (SELECT {names} FROM {view}{sample})").fetchone()
            tails = {s.column: v for s, v in zip(linear, values) if v is not None}
        for i, s in enumerate(mine):
            lo, top = row[2 * i: 2 * i + 2]
            if lo is not None:
                found[s.column].append((float(lo), float(top), float(tails.get(s.column, top))))
    return {c: (min(r[0] for r in rs), max(r[1] for r in rs), max(r[2] for r in rs)) for c, rs in found.items()}


PII_TYPES = ("email", "ip", "phone", "card", "cn_id", "iban")


# ---- samples ----------------------------------------------------------------------------------------

def sample_rejects(con: duckdb.DuckDBPyConnection, output: str, per_reason: int, chars: int, max_reasons: int,
                   signal_columns: dict[str, list[str]]) -> dict[tuple[str, str], tuple[int, list[dict]]]:
    """(documents, a few of them) per (stage, reason), chosen by a hash of their id (stable across builds).

    Two steps so that no document's text is read unless it is shown: pick (file, row) pairs reading
    only the id and reason columns, then read those rows of those files (DuckDB skips the other row
    groups by ``file_row_number``). Texts are cut to ``chars`` characters in SQL.
    """
    from curate import storage

    pattern = storage.join(storage.normalize(output), "rejects", "*.parquet")
    if not storage.glob(pattern):
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
    out: dict[tuple[str, str], tuple[int, list[dict]]] = {(stage, reason): (docs, []) for stage, reason, docs, _ in picked}
    for file, rows in wanted.items():
        present = set(storage.footer(file)[0].names)  # the footer only: no DuckDB bind per file
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
                out[(stage, reason)][1].append(record)
    for _, docs in out.values():
        docs.sort(key=lambda r: r.get("id") or "")
    return out


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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


def ablation_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[dict]:
    """The answer of a `curate ablate` folder: the summary row (``seed IS NULL``) of each evaluation set and
    mixture of ``DIR/results.parquet``, in the file's order (sets, then the baseline mixture first)."""
    cursor = con.execute("""
        SELECT eval_set, mixture, loss, loss_std, bits_per_byte, delta_vs_first, ci_low, ci_high, ci_method, verdict
        FROM read_parquet($t) WHERE seed IS NULL
    """, {"t": table})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
