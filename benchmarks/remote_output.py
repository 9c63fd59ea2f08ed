"""The same `curate run` writing its output to local disk vs to an S3-compatible store (moto's server).

    .venv/bin/python -m curate.benchmarks.remote_output [--data ../shared/data] [--copies 40] [--files 4]

Builds ``--files`` WARCs holding ``--copies`` concatenations of the shared Dolma sample in all (one task
each), then runs the default WARC pipeline (extract ... dedup, pii) on them twice with ``--workers 2``:
into a local folder (the baseline, measured in the same run) and into ``s3://bench/run/`` on moto's
standalone S3 server (its own process, on 127.0.0.1). Prints wall seconds, the CPU seconds of the
driver process (Ray's workers are not its children: their work is in the stage-seconds), the
stage-seconds recorded in the stats, and the ratio to the local run. On a loopback network this measures curate's output overhead (local staging, whole-object
uploads, listings, the lock, the manifest, the id check and dedup's work files in the store), not a
real network's bandwidth. Print ``uptime`` with the figures: the machine may be shared.

    .venv/bin/python -m curate.benchmarks.remote_output --small-objects 1000

instead puts N stats-sized Parquet objects in the store and times what the end of a run and ``curate
stats`` do with many of them: DuckDB reading them by a folder glob vs given the list of objects, and
the id check (``curate.ids``) over them.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from curate.tests.remote_servers import MotoServer


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(files: list[str], output: str, env: dict, cwd: str) -> tuple[float, float, str]:
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "curate.cli", "run", "--input", *files, "--format", "warc",
                           "-o", output, "--workers", "2", "--no-progress"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"curate run -o {output} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, children_cpu() - cpu, done.stdout


def stage_seconds(output: str, env: dict, cwd: str) -> float:
    done = subprocess.run([sys.executable, "-m", "curate.cli", "sql", output, "--csv", "SELECT sum(seconds) FROM stats"],
                          cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def small_objects(count: int) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    from concurrent.futures import ThreadPoolExecutor

    from curate import storage
    from curate.ids import _colliding

    with MotoServer() as s3:
        os.environ.update(s3.env())
        client = s3.client()
        client.create_bucket(Bucket="bench")
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"id": [f"d{i}" for i in range(10)], "task_id": ["t"] * 10,
                                 "position": list(range(10))}), sink)
        body = sink.getvalue().to_pybytes()
        with ThreadPoolExecutor(32) as threads:
            list(threads.map(lambda i: client.put_object(Bucket="bench", Key=f"run/stats/t{i:06d}.parquet", Body=body),
                             range(count)))
        pattern = "s3://bench/run/stats/*.parquet"
        files = storage.glob(pattern)
        timings = {}
        for name, given in (("DuckDB, list of objects", files), ("DuckDB, folder glob", pattern)):
            con = duckdb.connect()
            storage.register_duckdb(con, pattern)  # a cold client (no listing cached), as in a new process
            started = time.perf_counter()
            con.execute("SELECT count(*) FROM read_parquet(?)", [given]).fetchone()
            timings[name] = time.perf_counter() - started
        started = time.perf_counter()
        _colliding(files)
        timings["id check (curate.ids)"] = time.perf_counter() - started
        print(f"{count} objects in moto's S3 server; load average {os.getloadavg()[0]:.2f}")
        for name, seconds in timings.items():
            print(f"  {name:26s} {seconds:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--small-objects", type=int, default=0, help="Time reading N small objects instead.")
    args = parser.parse_args()
    if args.small_objects:
        small_objects(args.small_objects)
        return
    sample = (Path(args.data) / "warc" / "dolma" / "sample-0000.warc.gz").read_bytes()
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as s3:
        files = []
        for i in range(args.files):
            path = Path(tmp) / f"part-{i}.warc.gz"
            path.write_bytes(sample * (args.copies // args.files))
            files.append(str(path))
        mb = sum(os.path.getsize(f) for f in files) / 1e6
        s3.client().create_bucket(Bucket="bench")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **s3.env()}
        print(f"{mb:.1f} MB of WARC in {args.files} files, default pipeline, --workers 2; "
              f"load average before: {os.getloadavg()[0]:.2f}")
        base = None
        for name, output in (("local disk", str(Path(tmp) / "out")), ("s3 (moto server)", "s3://bench/run/")):
            wall, cpu, _ = run(files, output, env, tmp)
            stages = stage_seconds(output, env, tmp)
            base = base or wall
            print(f"  {name:18s} wall {wall:6.1f} s  driver CPU {cpu:6.1f} s  stage-seconds {stages:6.1f}  "
                  f"{wall / base:5.2f}x local wall  (load {os.getloadavg()[0]:.2f})")
        keys = [o["Key"] for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket="bench")
                for o in page.get("Contents", [])]
        print(f"  objects in the store after the run: {len(keys)}")


if __name__ == "__main__":
    main()
