"""Dedup throughput: curate vs datasketch used the plain way vs datatrove's 4-step MinHash dedup.

Same documents (~3 KB, built from real text in ../shared/data: half near-duplicate
variants, half heavily edited and so distinct), same shingles (word 5-grams,
character 5-grams for Chinese), same threshold 0.8 and LSH shape (14 bands x 9 rows of 128).

- curate: ``MinHashDedup.run`` on Ray (``--workers``) plus applying the decisions.
- datasketch: one process, per document ``MinHash.update_batch`` (xxhash32 of the
  shingle) then ``MinHashLSH.query`` and ``insert``.
- datatrove: signatures, buckets, cluster, filter with ``LocalPipelineExecutor``
  (``--workers`` processes), in its own venv under /tmp (created here if missing).

Prints docs/s of each and the RATIOs (goals: >= 10x datasketch, >= 2x datatrove).

    .venv/bin/python -m curate.benchmarks.dedup_throughput [--docs 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.benchmarks.dedup_quality import mutate, real_documents
from curate.stages import minhash as mh

DATATROVE_VENV = Path(os.environ.get("CURATE_DATATROVE_VENV", "/tmp/curate-bench-datatrove-venv"))


def build_documents(count: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    docs = [(k, t) for k, t in real_documents() if len(t.encode()) > 1500]
    en_vocab = sorted({w for k, t in docs[:300] if k == "en" for w in t.split()})
    zh_vocab = sorted({c for k, t in docs if k == "zh" for c in t if "\u4e00" <= c <= "\u9fff"})
    out = list(docs[:count])
    while len(out) < count:
        kind, text = docs[rng.integers(len(docs))]
        near = rng.random() < 0.5
        rate = rng.choice([0.01, 0.03]) if near else 0.6
        out.append((kind, mutate(kind, text, "sub", rate, rng, zh_vocab if kind == "zh" else en_vocab)))
    return out


def run_curate(docs: list[tuple[str, str]], workdir: Path, workers: int, shards: int, **params) -> tuple[float, dict]:
    from curate.stages.dedup import MinHashDedup

    ids = [f"d{i}" for i in range(len(docs))]
    table = pa.table({"id": ids, "source": ["bench"] * len(docs), "text": [t for _, t in docs]})
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(docs)), shards)):
        path = workdir / f"shard{i}.parquet"
        pq.write_table(table.take(pa.array(chunk, pa.int64())), path)
        paths.append(str(path))
    started = time.perf_counter()
    stage = MinHashDedup.from_config(params)
    name = f"dedup{workers}-{len(params)}"
    summary = stage.run(paths, str(workdir / name), workers=workers)
    stage.load_decisions(str(workdir / name))
    removed = 0
    for path in paths:
        result = stage.process(pq.read_table(path))
        reasons = pa.array(result.reasons, pa.string())
        removed += len(reasons) - reasons.null_count
    seconds = time.perf_counter() - started
    summary["removed"] = removed
    return seconds, summary


def run_datasketch(docs: list[tuple[str, str]]) -> tuple[float, int]:
    import xxhash
    from datasketch import MinHash, MinHashLSH

    hashfunc = lambda shingle: xxhash.xxh32_intdigest(shingle)  # noqa: E731
    started = time.perf_counter()
    lsh = MinHashLSH(threshold=0.8, num_perm=128, weights=(0.1, 0.9))  # 14 x 9, as curate
    removed = 0
    for i, (kind, text) in enumerate(docs):
        tokens = mh.token_strings([text])[0]
        shingles = {" ".join(s).encode() for s in mh.python_shingles(tokens, 5)}
        sketch = MinHash(num_perm=128, hashfunc=hashfunc)
        sketch.update_batch(shingles)
        if lsh.query(sketch):
            removed += 1
        else:
            lsh.insert(str(i), sketch)
    return time.perf_counter() - started, removed


DATATROVE_SCRIPT = textwrap.dedent(
    """
    import re, sys, time, unicodedata
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SameTokens(WordTokenizer):
        # curate's shingle units: words, or characters for Chinese text
        def word_tokenize(self, text):
            norm = unicodedata.normalize("NFKC", text).lower()
            if len(re.findall(r"[\\u4e00-\\u9fff]", norm)) >= 0.3 * max(len(norm), 1):
                return [c for c in norm if unicodedata.category(c)[0] not in "ZPSC"]
            return re.findall(r"[^\\W_]+", norm)
        def sent_tokenize(self, text):
            return [text]
        def span_tokenize(self, text):
            return [(0, len(text))]

    def main():
        src, work, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
        config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=9, hash_config=HashConfig(precision=32))
        started = time.perf_counter()
        LocalPipelineExecutor([JsonlReader(src), MinhashDedupSignature(f"{work}/sigs", config=config, language=SameTokens())],
                              tasks=workers, workers=workers, logging_dir=f"{work}/logs1").run()
        LocalPipelineExecutor([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=config)],
                              tasks=config.num_buckets, workers=workers, logging_dir=f"{work}/logs2").run()
        LocalPipelineExecutor([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=config)],
                              tasks=1, logging_dir=f"{work}/logs3").run()
        LocalPipelineExecutor([JsonlReader(src), MinhashDedupFilter(f"{work}/remove"), JsonlWriter(f"{work}/out")],
                              tasks=workers, workers=workers, logging_dir=f"{work}/logs4").run()
        print("SECONDS", time.perf_counter() - started)

    if __name__ == "__main__":  # the executor's worker processes import this file
        main()
    """
)


def ensure_datatrove() -> Path:
    """datatrove's venv, pinned (curate.benchmarks.peers), built on first use."""
    from curate.benchmarks.peers import datatrove_requirements, ensure_venv

    return ensure_venv(DATATROVE_VENV, datatrove_requirements())


def run_datatrove(docs: list[tuple[str, str]], workdir: Path, workers: int) -> tuple[float, int]:
    python = ensure_datatrove()
    src = workdir / "jsonl"
    src.mkdir()
    for part, chunk in enumerate(np.array_split(np.arange(len(docs)), workers)):
        with gzip.open(src / f"part{part}.jsonl.gz", "wt", encoding="utf-8") as f:
            for i in chunk:
                f.write(json.dumps({"id": f"d{i}", "text": docs[i][1]}, ensure_ascii=False) + "\n")
    script = workdir / "datatrove_minhash.py"
    script.write_text(DATATROVE_SCRIPT)
    done = subprocess.run([str(python), str(script), str(src), str(workdir / "dt"), str(workers)],
                          capture_output=True, text=True, cwd=str(workdir))
    if done.returncode != 0:
        raise RuntimeError(f"datatrove failed:\n{done.stderr[-3000:]}")
    seconds = float(done.stdout.split("SECONDS")[-1])
    kept = 0
    for path in (workdir / "dt" / "out").glob("*"):
        with gzip.open(path, "rt") as f:
            kept += sum(1 for _ in f)
    return seconds, len(docs) - kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-datatrove", action="store_true")
    args = parser.parse_args()
    docs = build_documents(args.docs)
    mean_bytes = np.mean([len(t.encode()) for _, t in docs])
    print(f"{len(docs)} documents, mean {mean_bytes:.0f} bytes, {sum(k == 'zh' for k, _ in docs)} Chinese")
    results = {}
    import ray

    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for workers in sorted({1, args.workers}):
            seconds, summary = run_curate(docs, tmp, workers, shards=max(8, 4 * args.workers))
            results[f"curate ({workers} worker{'s' * (workers > 1)})"] = (seconds, summary["removed"])
            print(f"curate workers={workers}: {seconds:.1f}s, steps {summary['seconds']}")
        seconds, summary = run_curate(docs, tmp, args.workers, shards=max(8, 4 * args.workers), verify=False)
        results["curate, verify: false"] = (seconds, summary["removed"])
        results["datasketch plain (1 process)"] = run_datasketch(docs)
        if not args.skip_datatrove:
            results[f"datatrove 4-step ({args.workers} workers)"] = run_datatrove(docs, tmp, args.workers)
    base = results[f"curate ({args.workers} worker{'s' * (args.workers > 1)})"][0]
    print(f"\n{'':34s} {'seconds':>9s} {'docs/s':>9s} {'removed':>8s}")
    for name, (seconds, removed) in results.items():
        print(f"{name:34s} {seconds:9.1f} {len(docs) / seconds:9.0f} {removed if removed is not None else '-':>8}")
    for name, (seconds, _) in results.items():
        if not name.startswith("curate"):
            print(f"RATIO curate/{name.split(' ')[0]}: {seconds / base:.1f}x")


if __name__ == "__main__":
    main()
