"""Dashboard at scale: build the report of a generated N-document run; seconds vs ``curate stats``.

The generated run has the layout and columns a real ``curate run`` writes (docs/, rejects/, stats/,
manifest.json; shards of 200,000 rows in row groups of 1,000 like the runner's batches, zstd): three
sources, the demo pipeline's stages, every signal column, 30 % rejects spread over the stages with
their reasons, signals null after the stage that dropped a document, dedup clusters and PII counts.
Texts are drawn from a pool of generated ones (200 to 2,000 characters) so the text column costs
what a real one does to scan.

The baseline is ``curate stats OUT --by-lang`` (the funnel and the language table, measured in the
same process on the same files): the report's ratio to it says what the extra panels cost.

    .venv/bin/python -m curate.benchmarks.dashboard_bench [--docs 10000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.execute import STATS_SCHEMA

STAGES = ["extract", "length", "langid", "gopher_repetition", "gopher_quality", "c4", "fineweb", "detox",
          "dedup", "pii"]
#: (stage, reason, share of all documents) for the rejects
REJECTS = [
    ("length", "length:empty", 0.01), ("langid", "langid:not-allowed", 0.08), ("langid", "langid:low-score", 0.02),
    ("gopher_repetition", "gopher_repetition:dup_line_frac", 0.02),
    ("gopher_quality", "gopher_quality:min_words", 0.04), ("gopher_quality", "gopher_quality:alpha_words", 0.01),
    ("c4", "c4:min_sentences", 0.03), ("fineweb", "fineweb:line_punct_ratio", 0.02),
    ("detox", "detox:wordlist", 0.01), ("dedup", "near-duplicate", 0.04), ("dedup", "exact-duplicate", 0.02),
]
SOURCES = ["web", "books", "code"]
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their has would when if so no what can out up more "
         "data model corpus token filter river mountain kitchen harbour lantern garden winter").split()


def text_pool(rng: np.random.Generator, size: int = 20_000) -> pa.Array:
    texts = []
    for _ in range(size):
        n = int(rng.integers(30, 320))
        words = rng.choice(WORDS, n)
        lines = [" ".join(words[i:i + 12]) + "." for i in range(0, n, 12)]
        texts.append("\n".join(lines))
    return pa.array(texts, pa.string())


def write_shard(out: str, index: int, rows: int, pool: pa.Array, rng: np.random.Generator) -> list[dict]:
    """One task's docs and rejects shards; returns its stats rows."""
    source = {1: "books", 2: "code"}.get(index % 20, "web")  # most shards are web
    text = pool.take(pa.array(rng.integers(0, len(pool), rows)))
    chars = np.asarray(pc.utf8_length(text), dtype=np.int64)
    stage_at = {name: i for i, name in enumerate(STAGES)}
    draw = rng.random(rows)
    edges = np.cumsum([share for _, _, share in REJECTS])
    which = np.searchsorted(edges, draw)
    rejected = which < len(REJECTS)
    reason = np.array([r for _, r, _ in REJECTS] + [None], dtype=object)[which]
    stage = np.array([s for s, _, _ in REJECTS] + [None], dtype=object)[which]
    reject_pos = np.array([stage_at[s] for s, _, _ in REJECTS] + [len(STAGES)])[which]

    def signal(values, stage_name, dtype=pa.float32()):
        return pa.array(values, dtype, mask=reject_pos < stage_at[stage_name])

    langs = np.where(reason == "langid:not-allowed", rng.choice(["de", "fr", "es", "ru"], rows),
                     rng.choice(["en", "zh"], rows, p=[0.8, 0.2]))
    lang_score = np.where(reason == "langid:low-score", rng.uniform(0.3, 0.65, rows), rng.beta(8, 1.2, rows))
    words = np.maximum(1, (chars / 5.5).astype(np.int64))
    words = np.where(reason == "gopher_quality:min_words", rng.integers(3, 50, rows), words)
    cluster = rng.integers(0, rows // 3, rows)
    ids = np.char.add(f"{source}-{index:05d}-", np.arange(rows).astype(str))
    columns = {
        "id": pa.array(ids), "source": pa.array(np.full(rows, source)), "text": text,
        "url": pa.array(np.char.add("https://example.org/page/", np.arange(rows).astype(str))),
        "path": pa.array(np.full(rows, f"raw/{source}-{index:05d}.warc.gz")),
        "char_count": signal(chars, "length", pa.int64()),
        "lang": signal(langs, "langid", pa.string()), "lang_score": signal(lang_score, "langid"),
        "lang_runner_up_share": signal(rng.beta(1, 12, rows), "langid"),
        "cjk_ratio": signal(np.where(langs == "zh", rng.uniform(0.6, 1, rows), rng.beta(1, 60, rows)), "langid"),
        "gopher_dup_line_frac": signal(np.where(reason == "gopher_repetition:dup_line_frac",
                                                rng.uniform(0.3, 0.9, rows), rng.beta(1, 20, rows)), "gopher_repetition"),
        "gopher_top_2gram_char_frac": signal(rng.beta(2, 30, rows), "gopher_repetition"),
        "gopher_words": signal(words, "gopher_quality", pa.int32()),
        "gopher_mean_word_length": signal(rng.normal(4.6, 0.6, rows), "gopher_quality"),
        "gopher_alpha_words_ratio": signal(np.where(reason == "gopher_quality:alpha_words",
                                                    rng.uniform(0.4, 0.8, rows), rng.uniform(0.8, 1, rows)),
                                           "gopher_quality"),
        "gopher_stop_words": signal(rng.integers(0, 9, rows), "gopher_quality", pa.int32()),
        "c4_sentences": signal(np.where(reason == "c4:min_sentences", rng.integers(0, 5, rows),
                                        rng.integers(5, 200, rows)), "c4", pa.int32()),
        "c4_kept_lines_ratio": signal(rng.beta(6, 2, rows), "c4"),
        "fineweb_line_punct_ratio": signal(np.where(reason == "fineweb:line_punct_ratio",
                                                    rng.uniform(0, 0.12, rows), rng.uniform(0.12, 1, rows)), "fineweb"),
        "fineweb_short_line_ratio": signal(rng.beta(2, 5, rows), "fineweb"),
        "toxic_score": signal(np.where(reason == "detox:wordlist", rng.uniform(0.006, 0.05, rows),
                                       rng.beta(1, 400, rows) * 0.01), "detox"),
        "toxic_count": signal(np.where(reason == "detox:wordlist", rng.integers(1, 9, rows), 0), "detox", pa.int32()),
        "dup_cluster_id": signal(np.char.add(f"c{index}-", cluster.astype(str)), "dedup", pa.string()),
        "dup_cluster_size": signal(np.where(np.isin(reason, ["near-duplicate", "exact-duplicate"]),
                                            rng.integers(2, 40, rows), 1), "dedup", pa.int32()),
    }
    for kind in ("email", "ip", "phone", "card", "cn_id", "iban"):
        columns[f"pii_{kind}"] = signal(rng.poisson(0.05, rows), "pii", pa.int32())
    table = pa.table(columns)
    task = f"{source}-{index:05d}"
    kept = pa.array(~rejected)
    docs = table.filter(kept)
    rejects = table.filter(pc.invert(kept)).append_column(
        "reject_stage", pa.array(stage[rejected], pa.string())).append_column(
        "reject_reason", pa.array(reason[rejected], pa.string()))
    pq.write_table(docs, os.path.join(out, "docs", f"{task}.parquet"), compression="zstd", row_group_size=1000)
    pq.write_table(rejects, os.path.join(out, "rejects", f"{task}.parquet"), compression="zstd",
                   row_group_size=1000)
    stats, alive, alive_bytes = [], rows, int(chars.sum())
    for position, name in enumerate(STAGES):
        here = reject_pos == position
        dropped = int(here.sum())
        dropped_bytes = int(chars[here].sum())
        reasons = [{"reason": r, "kind": "reject", "docs": int((reason == r).sum())}
                   for s, r, _ in REJECTS if s == name]
        stats.append({"task_id": task, "segment": int(position >= stage_at["dedup"]), "source": source,
                      "path": f"raw/{task}.warc.gz", "stage": name, "position": position, "docs_in": alive,
                      "docs_out": alive - dropped, "bytes_in": alive_bytes, "bytes_out": alive_bytes - dropped_bytes,
                      "rejected": dropped, "skipped": 0, "seconds": float(rng.uniform(1, 5)), "reasons": reasons})
        alive, alive_bytes = alive - dropped, alive_bytes - dropped_bytes
    pq.write_table(pa.Table.from_pylist(stats, schema=STATS_SCHEMA), os.path.join(out, "stats", f"{task}.parquet"))
    return stats


def generate_run(out: str, docs: int, per_shard: int = 200_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for sub in ("docs", "rejects", "stats"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    pool = text_pool(rng)
    index = 0
    for start in range(0, docs, per_shard):
        write_shard(out, index, min(per_shard, docs - start), pool, rng)
        index += 1
    manifest = {"complete": True, "docs": None, "rejects": None, "failed": {}, "curate_version": "bench",
                "config": {"inputs": [{"source": s, "format": "warc", "paths": [], "options": {}} for s in SOURCES],
                           "stages": [{name: {}} for name in STAGES], "run": {}},
                "tasks": {}}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f)


def _cpu() -> float:
    """CPU seconds of this process, every thread (DuckDB's included)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000_000)
    parser.add_argument("--keep", help="generate into (or reuse) this folder instead of a temporary one")
    args = parser.parse_args()
    from curate import stats
    from curate.dashboards.report import ReportParams, build_report

    root = args.keep or tempfile.mkdtemp(prefix="dashboard-bench-")
    out = os.path.join(root, "out")
    try:
        if not os.path.exists(os.path.join(out, "manifest.json")):
            t0 = time.perf_counter()
            generate_run(out, args.docs)
            print(f"generated {args.docs:,} documents in {time.perf_counter() - t0:.1f}s -> {out}")
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
        print(f"run on disk: {size / 1e9:.2f} GB")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine: "
              "wall times grow with the load, CPU seconds much less)")
        t0, c0 = time.perf_counter(), _cpu()
        con = stats.connect(out)
        stats.funnel(con)
        stats.by_language(con)
        baseline, baseline_cpu = time.perf_counter() - t0, _cpu() - c0
        t0, c0 = time.perf_counter(), _cpu()
        report = os.path.join(root, "report.html")
        build_report(out, report, params=ReportParams())
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        print(f"curate stats --by-lang (baseline): {baseline:.1f}s wall, {baseline_cpu:.1f}s CPU")
        print(f"curate dashboard: {seconds:.1f}s wall, {cpu:.1f}s CPU ({seconds / baseline:.1f}x the baseline's "
              f"wall time); report {os.path.getsize(report) / 1e6:.1f} MB")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
