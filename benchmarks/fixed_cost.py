"""Fixed cost and marginal rate of `curate run`, end to end, against the plain pyarrow loop (issue 16.1).

    python -m curate.benchmarks.fixed_cost                     # 50k and 500k tiny documents
    python -m curate.benchmarks.fixed_cost --docs 20000 200000 --repeat 2

Each job is a fresh process, timed from outside, as a user runs it: `curate run --input X.jsonl --format
jsonl --stages length` once per executor (``--set run.executor=in-process`` and ``=ray``; and ``auto``,
what a user gets), and the baseline, a plain script written the way pyarrow's documentation shows
(``pyarrow.json.read_json``, ``pyarrow.compute`` filter, ``pyarrow.parquet.write_table``) applying the
same rule as the ``length`` stage (drop documents that are empty after stripping whitespace). Two input
sizes give a line: its intercept is the fixed cost (what a run costs before and after its documents) and
its slope the marginal rate (documents per second). The inputs are distinct random words, never seen by
any cache. With ``--repeat`` the rounds alternate the jobs and the best of the rounds is kept per point
(the machine is shared); the Ray runs' own record of Ray's start and stop is printed too.

Prints the load average before and after, since on a shared machine that moves every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

PLAIN = r'''
import sys
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

table = pj.read_json(sys.argv[1])
text = table["text"]
keep = pc.greater_equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 1)
pq.write_table(table.filter(keep), sys.argv[2])
'''


def write_input(path: str, docs: int, seed: int) -> int:
    """``docs`` one-line documents of 1 to 12 random words; returns the bytes written."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(20000)]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(docs):
            words = rng.choices(vocabulary, k=rng.randint(0, 12))
            f.write(json.dumps({"text": " ".join(words) + f" {i}" if words else ""}) + "\n")
    return os.path.getsize(path)


def timed(command: list[str], cwd: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the command; the CPU of its descendants counts as far as they were
    waited for (Ray's processes are, on a clean shutdown; those its watcher kills are not)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(command)}\n{stderr.decode()[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime


def ray_start_stop(output: str) -> tuple[float, float]:
    """(Ray start, Ray stop) seconds as the run recorded them in its ``stats/timing``."""
    import duckdb

    rows = dict(duckdb.sql(f"SELECT step, sum(seconds) FROM read_parquet('{output}/stats/timing/*.parquet') "
                           "WHERE step IN ('ray start', 'ray stop') GROUP BY step").fetchall())
    return rows.get("ray start", 0.0), rows.get("ray stop", 0.0)


def line(sizes: list[int], seconds: list[float]) -> tuple[float, float]:
    """(fixed seconds, marginal documents per second) of the line through two points."""
    (n1, n2), (t1, t2) = sizes, seconds
    slope = (t2 - t1) / (n2 - n1)
    return t1 - slope * n1, (1 / slope if slope > 0 else float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, nargs=2, default=[50_000, 500_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    curate = os.path.join(os.path.dirname(sys.executable), "curate")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="fixed-cost-") as tmp:
        with open(os.path.join(tmp, "plain.py"), "w") as f:
            f.write(PLAIN)
        inputs = []
        for k, n in enumerate(args.docs):
            path = os.path.join(tmp, f"in{k}.jsonl")
            size = write_input(path, n, seed=k)
            inputs.append(path)
            print(f"input {k}: {n:,} documents, {size / 1e6:.1f} MB")
        jobs = {
            "plain pyarrow": lambda i, out: [sys.executable, "plain.py", inputs[i], out + ".parquet"],
        }
        for executor in ("in-process", "ray", "auto"):
            jobs[f"curate {executor}"] = (lambda e: lambda i, out: [
                curate, "run", "--input", inputs[i], "--format", "jsonl", "--stages", "length", "--output", out,
                "--no-progress", "--workers", str(args.workers), "--set", f"run.executor={e}"])(executor)
        # rounds alternate the jobs (a shared machine's load moves); the best of the rounds is kept per point
        best = {(name, i): (float("inf"), float("inf")) for name in jobs for i in range(2)}
        ray_parts: list[tuple[float, float]] = []
        for r in range(args.repeat):
            for i in range(2):
                for name, build in jobs.items():
                    out = os.path.join(tmp, f"out-{name.replace(' ', '-')}-{i}-{r}")
                    best[name, i] = min(best[name, i], timed(build(i, out), tmp))
                    if name == "curate ray":
                        ray_parts.append(ray_start_stop(out))
                    shutil.rmtree(out, ignore_errors=True)
                    if os.path.exists(out + ".parquet"):
                        os.remove(out + ".parquet")
        results = {name: [best[name, i][0] for i in range(2)] for name in jobs}
        cpu_results = {name: [best[name, i][1] for i in range(2)] for name in jobs}
    print(f"\n{'wall clock':<20} {args.docs[0]:>10,} docs {args.docs[1]:>10,} docs   fixed s   marginal docs/s")
    plain_fixed, plain_rate = line(args.docs, results["plain pyarrow"])
    for name, points in results.items():
        fixed, rate = line(args.docs, points)
        print(f"{name:<20} {points[0]:>13.2f} s {points[1]:>13.2f} s {fixed:>9.2f} {rate:>17,.0f}")
    print(f"\n{'CPU seconds':<20} {args.docs[0]:>10,} docs {args.docs[1]:>10,} docs   fixed s   marginal docs/CPU-s")
    for name, points in cpu_results.items():
        fixed, rate = line(args.docs, points)
        print(f"{name:<20} {points[0]:>13.2f} s {points[1]:>13.2f} s {fixed:>9.2f} {rate:>17,.0f}")
    print("\nover the plain loop, per size (s):")
    for name, points in results.items():
        if name != "plain pyarrow":
            extra = [c - p for c, p in zip(points, results["plain pyarrow"])]
            print(f"  {name:<18} " + "  ".join(f"{x:+.2f}" for x in extra)
                  + f"   fixed cost {line(args.docs, points)[0] - plain_fixed:+.2f} s vs the plain loop's")
    starts, stops = sorted(p[0] for p in ray_parts), sorted(p[1] for p in ray_parts)
    print(f"curate ray, as its runs recorded (stats/timing), median of {len(ray_parts)}: Ray start "
          f"{starts[len(starts) // 2]:.2f} s (min {starts[0]:.2f}), stop {stops[len(stops) // 2]:.2f} s "
          f"(min {stops[0]:.2f})")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
