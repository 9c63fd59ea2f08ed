"""Reading WARC records from local disk vs over HTTP (range requests) vs from an S3-compatible store.

    .venv/bin/python -m curate.benchmarks.remote_read [--data ../shared/data] [--copies 40] [--repeat 3]

Builds one WARC of ``--copies`` concatenations of the shared Dolma sample (per-record gzip, Common
Crawl's layout: a concatenation is a valid WARC), serves it with the tests' HTTP server (range
requests, on 127.0.0.1) and uploads it to moto's standalone S3 server (its own process), then reads it
with curate's WARC reader (``WarcReader.read``: records parsed, HTML decoded, nothing extracted) from
each place in turn, best of ``--repeat``. Prints MB per second and the ratio to local disk (the
baseline, measured in the same run). On a loopback network this measures curate's client overhead
(range requests of 8 MiB, retries wrapper, s3fs/aiohttp), not a real network's bandwidth.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from curate.readers import Task
from curate.readers.warc import WarcReader
from curate.tests.remote_servers import HttpServer, MotoServer


def read_all(path: str) -> tuple[int, float]:
    reader = WarcReader("warc")
    started = time.perf_counter()
    records = sum(batch.records for batch in reader.read(Task("warc", "warc", path)))
    return records, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sample = Path(args.data) / "warc" / "dolma" / "sample-0000.warc.gz"
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.warc.gz"
        big.write_bytes(sample.read_bytes() * args.copies)
        mb = big.stat().st_size / 1e6
        with HttpServer(Path(tmp)) as http, MotoServer() as s3:
            os.environ.update(s3.env())
            client = s3.client()
            client.create_bucket(Bucket="bench")
            client.upload_file(str(big), "bench", "big.warc.gz")
            places = {"local disk": str(big), "http (range requests)": f"{http.url}/big.warc.gz",
                      "s3 (moto server)": "s3://bench/big.warc.gz"}
            base = None
            print(f"{mb:.1f} MB WARC ({args.copies} x the Dolma sample), best of {args.repeat}")
            for name, path in places.items():
                best = min(read_all(path)[1] for _ in range(args.repeat))
                records = read_all(path)[0]
                rate = mb / best
                base = base or rate
                print(f"  {name:24s} {records:6d} records  {best:6.2f} s  {rate:7.1f} MB/s  {rate / base:5.2f}x local")


if __name__ == "__main__":
    main()
