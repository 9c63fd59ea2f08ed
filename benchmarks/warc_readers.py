"""WARC parsing speed: warcio vs FastWARC vs curate's lenient parser, and which records each reads.

Every reader iterates all records of the WARC files in ../shared/data/warc and reads each payload
in full (what an extraction run needs). Timings are the best of ``--repeat`` passes; the ratios
are against warcio measured in the same run. The second table lists, per file, the records each
reader returned and whether it raised, which is why curate uses FastWARC for per-record gzip and
its own parser for plain and whole-file gzip files.

    .venv/bin/python -m curate.benchmarks.warc_readers [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from curate.readers.warc import _fastwarc_records, _lenient_warc_records, _per_record_gzip

DATA = Path(__file__).resolve().parents[2] / "shared/data/warc"


def read_warcio(path: Path) -> int:
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    with open(path, "rb") as f:
        for record in ArchiveIterator(f, arc2warc=True):
            record.raw_stream.read()
            n += 1
    return n


def read_fastwarc(path: Path) -> int:
    from fastwarc.warc import ArchiveIterator

    n = 0
    with open(path, "rb") as f:
        for record in ArchiveIterator(f, parse_http=False, quirks_mode=True):
            record.reader.read()
            n += 1
    return n


def read_curate_lenient(path: Path) -> int:
    return sum(1 for _ in _lenient_warc_records(str(path), 64 << 20, Counter()))


def read_curate(path: Path) -> int:
    reader = _fastwarc_records if _per_record_gzip(str(path)) else _lenient_warc_records
    return sum(1 for _ in reader(str(path), 64 << 20, Counter()))


READERS = {"warcio": read_warcio, "fastwarc": read_fastwarc, "curate lenient parser": read_curate_lenient,
           "curate (fastwarc + lenient)": read_curate}


def outcome(read, path: Path) -> str:
    try:
        return str(read(path))
    except Exception as err:  # the point of this table
        return f"ERR {type(err).__name__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    files = sorted(p for p in Path(args.data).rglob("*") if p.is_file() and ".warc" in p.name and ".wat" not in p.name)

    print(f"{'file':60s} " + " ".join(f"{name[:14]:>14s}" for name in READERS))
    good = []
    for path in files:
        results = [outcome(read, path) for read in READERS.values()]
        print(f"{str(path.relative_to(args.data)):60s} " + " ".join(f"{r:>14s}" for r in results))
        if len(set(results)) == 1 and not results[0].startswith("ERR"):
            good.append(path)

    size = sum(p.stat().st_size for p in good)
    print(f"\nspeed on the {len(good)} files every reader reads identically ({size / 1e6:.1f} MB on disk), best of {args.repeat}:")
    base = None
    for name, read in READERS.items():
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            records = sum(read(p) for p in good)
            best = min(best, time.perf_counter() - started)
        base = base or best
        print(f"  {name:28s} {records / best:9.0f} records/s  {size / best / 1e6:7.1f} MB/s  {base / best:5.2f}x warcio")


if __name__ == "__main__":
    main()
