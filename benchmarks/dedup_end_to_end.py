"""`curate run --stages dedup` end to end against a plain datasketch script, fixed cost and marginal rate apart.

Run by hand (a few minutes on 2 shared cores):

    .venv/bin/python -m curate.benchmarks.dedup_end_to_end [--docs 12000] [--small 2000] [--workers 2]

What is timed is what a user runs and waits for:

- curate: the ``curate`` command (a subprocess, as typed in a shell) on a JSONL file:
  ``curate run --input docs.jsonl --format jsonl --stages dedup --output OUT --workers W``,
  wall clock from start to exit: Ray start, reading, the dedup job, applying the decisions,
  writing Parquet, stats and manifest. It runs at two sizes (``--small`` and ``--docs``
  documents): the difference gives the marginal rate, and what is left at the small size
  (its time less its documents at that rate) the fixed cost per run.
- datasketch: the plain script its documentation shows, in one process: per document
  ``MinHash(num_perm=128).update_batch`` of its shingles (word 5-grams of the lower-cased
  text split on whitespace; character 5-grams for Chinese text), then ``MinHashLSH(threshold=0.8,
  num_perm=128)`` ``query`` and, when nothing is found, ``insert``. Its default hash (SHA-1),
  its own choice of bands and rows. Timed on the same two sizes.

Documents: ``dedup_throughput.build_documents``: real text from ../shared/data (books, Chinese
Wikipedia and novels, web pages), the real documents once, then variants: half near-duplicates
(1-3 % of words substituted), half heavily edited (60 %) and so distinct. Mean ~4.8 KB.

The machine is shared: wall times are noisy; each figure is the median of ``--repeat`` runs
and the spread is printed. The ratio needs both sides measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from curate.benchmarks.dedup_throughput import build_documents


def cjk_text(text: str) -> bool:
    sample = text[:2000]
    return sum("\u4e00" <= c <= "\u9fff" for c in sample) >= 0.3 * max(len(sample), 1)


def datasketch_plain(docs: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s, documents removed): the script as datasketch's documentation writes it."""
    from datasketch import MinHash, MinHashLSH

    started, cpu = time.perf_counter(), time.process_time()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    removed = 0
    for i, text in enumerate(docs):
        if cjk_text(text):
            units = [c for c in text if not c.isspace()]
            shingles = ["".join(units[j:j + 5]) for j in range(max(1, len(units) - 4))]
        else:
            words = text.lower().split()
            shingles = [" ".join(words[j:j + 5]) for j in range(max(1, len(words) - 4))]
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf8") for s in shingles])
        if lsh.query(m):
            removed += 1
        else:
            lsh.insert(f"d{i}", m)
    return time.perf_counter() - started, time.process_time() - cpu, removed


def curate_command(jsonl: Path, out: Path, workers: int) -> tuple[float, int]:
    """(wall s, documents removed) of the curate command."""
    cli = str(Path(sys.executable).parent / "curate")
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    done = subprocess.run([cli, "run", "--input", str(jsonl), "--format", "jsonl", "--stages", "dedup",
                           "--output", str(out), "--workers", str(workers), "--no-progress"],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"curate run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    import pyarrow.parquet as pq

    kept = sum(pq.ParquetFile(path).metadata.num_rows for path in (out / "docs").rglob("*.parquet"))
    total = sum(1 for _ in open(jsonl, encoding="utf-8"))
    return seconds, total - kept


def write_jsonl(docs: list[str], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"id": f"d{i}", "text": text}, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=12000)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not 0 < args.small < args.docs:
        sys.exit("dedup_end_to_end: --small must be above 0 and below --docs")

    docs = [text for _, text in build_documents(args.docs)]
    sizes = (args.small, args.docs)
    with tempfile.TemporaryDirectory(prefix="curate-dedup-e2e-") as tmp:
        tmp = Path(tmp)
        files = {}
        for n in sizes:
            files[n] = tmp / f"docs{n}.jsonl"
            write_jsonl(docs[:n], files[n])
            print(f"{n:,} documents, {os.path.getsize(files[n]) / 1e6:.1f} MB of JSONL")
        ours: dict[int, list[float]] = {n: [] for n in sizes}
        theirs: dict[int, list[float]] = {n: [] for n in sizes}
        removed = {}
        for r in range(args.repeat):
            for n in sizes:
                seconds, gone = curate_command(files[n], tmp / "out", args.workers)
                ours[n].append(seconds)
                removed[("curate", n)] = gone
                wall, cpu, gone = datasketch_plain(docs[:n])
                theirs[n].append(wall)
                removed[("datasketch", n)] = gone
                print(f"round {r + 1}, {n:,} docs: curate {seconds:.1f} s (removed {removed[('curate', n)]:,}), "
                      f"datasketch {wall:.1f} s wall / {cpu:.1f} s CPU (removed {gone:,})")
    print()
    for name, runs in (("curate run --stages dedup", ours), ("datasketch plain script", theirs)):
        small, big = (statistics.median(runs[n]) for n in sizes)
        rate = (sizes[1] - sizes[0]) / max(big - small, 1e-9)
        fixed = small - sizes[0] / rate
        print(f"{name:28s} {sizes[0]:,} docs {small:6.1f} s   {sizes[1]:,} docs {big:6.1f} s   "
              f"marginal {rate:8,.0f} docs/s   fixed {fixed:5.1f} s")
    for n in sizes:
        print(f"RATIO datasketch/curate at {n:,} docs (end to end, wall): "
              f"{statistics.median(theirs[n]) / statistics.median(ours[n]):.2f}x")
    spread = {n: (min(ours[n]), max(ours[n]), min(theirs[n]), max(theirs[n])) for n in sizes}
    print("spread (min-max s): " + "; ".join(f"{n:,}: curate {a:.1f}-{b:.1f}, datasketch {c:.1f}-{d:.1f}"
                                             for n, (a, b, c, d) in spread.items()))


if __name__ == "__main__":
    main()
