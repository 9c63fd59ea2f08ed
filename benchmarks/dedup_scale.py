"""Dedup at scale: N synthetic-from-real documents through the whole stage; time and peak memory.

Each document is a random run of real paragraphs (English books, Chinese novels
and Wikipedia from ../shared/data), about 3 KB; ``--dup-rate`` of them are
near-duplicates (a copy of an earlier document with a few words changed) and a
few are exact copies. Reports seconds per step, documents/s, the driver's and
the largest task's peak RSS, and the size of the work directory.

    .venv/bin/python -m curate.benchmarks.dedup_scale [--docs 1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.benchmarks.dedup_quality import real_documents


def paragraphs() -> list[str]:
    out = []
    for kind, text in real_documents():
        out += [p for p in text.split("\n\n") if len(p) > 80]
    return out


def write_corpus(directory: Path, docs: int, per_shard: int, dup_rate: float, seed: int = 0) -> tuple[list[str], int]:
    rng = np.random.default_rng(seed)
    pool = paragraphs()
    lengths = np.array([len(p.encode()) for p in pool])
    paths, planted, made = [], 0, 0
    recent: list[str] = []
    while made < docs:
        count = min(per_shard, docs - made)
        texts = []
        for _ in range(count):
            if recent and rng.random() < dup_rate:
                words = recent[rng.integers(len(recent))].split(" ")
                for position in rng.integers(0, len(words), size=max(1, len(words) // 200)):
                    words[position] = f"edit{rng.integers(1 << 30)}"
                texts.append(" ".join(words))
                planted += 1
                continue
            picked, size = [], 0
            while size < 3000:
                index = int(rng.integers(len(pool)))
                picked.append(pool[index])
                size += lengths[index]
            texts.append("\n\n".join(picked))
            if len(recent) < 5000:
                recent.append(texts[-1])
            else:
                recent[rng.integers(len(recent))] = texts[-1]
        ids = [f"doc{made + i}" for i in range(count)]
        path = directory / f"shard{len(paths):05d}.parquet"
        pq.write_table(pa.table({"id": ids, "source": ["scale"] * count, "text": texts}), path)
        paths.append(str(path))
        made += count
    return paths, planted


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    import ray

    from curate.stages.dedup import MinHashDedup

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--per-shard", type=int, default=20_000)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tmp", default=None, help="where to put the corpus and work directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        paths, planted = write_corpus(tmp, args.docs, args.per_shard, args.dup_rate)
        corpus_bytes = directory_bytes(tmp)
        print(f"corpus: {args.docs} docs, {len(paths)} shards, {corpus_bytes / 1e9:.2f} GB parquet, "
              f"{planted} planted near-duplicates, built in {time.perf_counter() - started:.0f}s", flush=True)
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        stage = MinHashDedup()
        started = time.perf_counter()
        summary = stage.run(paths, str(tmp / "dedup"), workers=args.workers)
        run_seconds = time.perf_counter() - started
        stage.load_decisions(str(tmp / "dedup"))
        removed = 0
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
                reasons = pa.array(stage.process(pa.Table.from_batches([batch])).reasons, pa.string())
                removed += len(reasons) - reasons.null_count
        total_seconds = time.perf_counter() - started
        work_bytes = directory_bytes(tmp / "dedup")
        ray.shutdown()
    report = {
        "docs": args.docs,
        "workers": args.workers,
        "run_seconds": round(run_seconds, 1),
        "run_plus_apply_seconds": round(total_seconds, 1),
        "docs_per_second": round(args.docs / total_seconds),
        "removed": removed,
        "planted_near_duplicates": planted,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "workdir_gb": round(work_bytes / 1e9, 2),
        "corpus_gb": round(corpus_bytes / 1e9, 2),
        "summary": summary,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
