"""One big file vs the same documents in four files, through ``curate run`` end to end (issue 16.5).

    python -m curate.benchmarks.fanout [--mb 80] [--workers 2] [--stages STAGES] [--keep DIR]

Writes ``--mb`` MB of JSONL documents (real text of ../shared/data: each document eight paragraphs
drawn at random, seeded, from the English and Chinese books and passages and the langid sentences),
then runs the default pipeline (``curate run -f jsonl``, as the README shows it) three times on the
same documents:

    four files   part0..3.jsonl, a quarter of the documents each (the baseline: one task per file)
    one file     all.jsonl
    one .gz      all.jsonl.gz

and prints wall seconds, task seconds (the time the workers spent in tasks, from the manifest: Ray's
worker processes are not children the driver waits for, so ``getrusage`` would miss them), how busy
the workers were (task seconds / (wall x workers)), the tasks the run was cut into, and the ratios
one file / four files (goal <= 1.2; before the tasks were sized from the worker count, an 80 MB file
was one task and a .gz never cut: 112 s vs 59 s on 2 cores).
The machine is shared: check ``uptime`` first and compare ratios from one run, not seconds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def paragraphs(data: Path = SHARED) -> list[str]:
    from curate.tests.corpora import book_paragraphs, chinese_paragraphs

    pool = [p for p in book_paragraphs(data) + chinese_paragraphs(data) if len(p) >= 40]
    for path in sorted((data / "langid/lingua/sentences").glob("*.txt"))[:40]:  # sentences in many languages, joined in runs of ten
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        pool += [" ".join(lines[i:i + 10]) for i in range(0, len(lines), 10)]
    return pool


def write_inputs(folder: Path, megabytes: float, seed: int = 0) -> dict[str, list[str]]:
    """The same documents as one file, four files and one .gz; returns the --input lists."""
    pool = paragraphs()
    rng = random.Random(seed)
    lines, size, target = [], 0, int(megabytes * (1 << 20))
    while size < target:
        line = json.dumps({"text": "\n\n".join(rng.sample(pool, 8)), "url": f"https://example.org/{len(lines)}"},
                          ensure_ascii=False) + "\n"
        lines.append(line)
        size += len(line.encode("utf-8"))
    data = "".join(lines).encode("utf-8")
    (folder / "all.jsonl").write_bytes(data)
    with gzip.open(folder / "all.jsonl.gz", "wb", compresslevel=6) as f:
        f.write(data)
    quarter = (len(lines) + 3) // 4
    for k in range(4):
        (folder / f"part{k}.jsonl").write_text("".join(lines[k * quarter:(k + 1) * quarter]), encoding="utf-8")
    return {"four files": [str(folder / f"part{k}.jsonl") for k in range(4)],
            "one file": [str(folder / "all.jsonl")], "one .gz": [str(folder / "all.jsonl.gz")]}


def run(inputs: list[str], output: Path, workers: int, stages: str | None) -> dict:
    args = [sys.executable, "-m", "curate.cli", "run", "-f", "jsonl", "-o", str(output), "-w", str(workers),
            "--no-progress"]
    for path in inputs:
        args += ["-i", path]
    if stages:
        args += ["--stages", stages]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"curate run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    manifest = json.loads((output / "manifest.json").read_text())
    first = [t for t in manifest["tasks"].values() if t["segment"] == 0]
    return {"wall": wall, "busy": sum(t["seconds"] for t in manifest["tasks"].values()),
            "tasks": len(first),
            "docs": manifest["docs"], "rejects": manifest["rejects"],
            "executor": manifest.get("executor", {}).get("name", "?"), "plan": manifest.get("plan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=80.0, help="MB of JSONL documents (default 80)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", default=None, help="stages instead of the default pipeline")
    parser.add_argument("--keep", default=None, help="folder for inputs and outputs (default: a temporary one)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared data at {SHARED}")
    folder = Path(args.keep or tempfile.mkdtemp(prefix="curate-fanout-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}  "
          f"(cores: {os.cpu_count()})")
    layouts = write_inputs(folder, args.mb)
    results = {}
    for name, inputs in layouts.items():
        output = folder / ("out-" + name.replace(" ", "-").replace(".", ""))
        shutil.rmtree(output, ignore_errors=True)
        results[name] = run(inputs, output, args.workers, args.stages)
        r = results[name]
        print(f"{name:11s} {r['wall']:7.1f} s wall  {r['busy']:7.1f} task s  "
              f"{r['busy'] / (r['wall'] * args.workers):4.0%} busy  {r['tasks']:3d} tasks  "
              f"{r['docs']:,} kept  {r['rejects']:,} rejected  ({r['executor']}; load now {os.getloadavg()[0]:.2f})")
    base = results["four files"]
    same = all((r["docs"], r["rejects"]) == (base["docs"], base["rejects"]) for r in results.values())
    print(f"one file / four files: {results['one file']['wall'] / base['wall']:.2f}x wall, "
          f"{results['one file']['busy'] / base['busy']:.2f}x task seconds  (goal <= 1.2x wall)")
    print(f"one .gz  / four files: {results['one .gz']['wall'] / base['wall']:.2f}x wall, "
          f"{results['one .gz']['busy'] / base['busy']:.2f}x task seconds")
    print(f"same counts kept/rejected in all three: {same}; plan of the one file: {results['one file']['plan']}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
