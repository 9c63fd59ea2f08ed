"""Memory stays bounded by the batch size, not the input size.

    python -m curate.benchmarks.runner_memory [--mb 200 400 800]

Runs the same pipeline (JSONL -> length filter -> Parquet) over inputs of
growing size and prints the peak resident memory of the Ray workers: it should
stay flat while the input grows (the ratio printed is peak at the largest input
over peak at the smallest; goal: about 1).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time


def write_input(path: str, megabytes: int) -> int:
    line_template = {"text": "The quick brown fox jumps over the lazy dog. " * 40, "url": ""}
    docs, written = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < megabytes << 20:
            line_template["url"] = f"https://example.org/{docs}"
            line = json.dumps(line_template) + "\n"
            f.write(line)
            written += len(line)
            docs += 1
    return docs


def _rss_of_workers() -> int:
    """Resident bytes of every Ray worker process (their command lines start with ray::)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if not cmd.startswith(b"ray::"):
                continue
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_once(path: str, out: str) -> tuple[float, int]:
    import ray

    from curate.config import from_dict
    from curate.runner import Runner

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_of_workers())
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    config = from_dict({"inputs": [{"source": "big", "format": "jsonl", "paths": [path]}],
                        "stages": ["length"], "run": {"task_mb": 64}})
    started = time.perf_counter()
    summary = Runner(config, out, workers=2, show_progress=False).run()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    ray.shutdown()
    assert summary.ok
    return seconds, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, nargs="+", default=[200, 400, 800])
    args = parser.parse_args()
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in args.mb:
            path = os.path.join(tmp, f"in-{megabytes}.jsonl")
            docs = write_input(path, megabytes)
            seconds, peak = run_once(path, os.path.join(tmp, f"out-{megabytes}"))
            peaks.append(peak)
            print(f"input {megabytes:5d} MB ({docs:,} docs): {seconds:6.1f} s, {megabytes / seconds:5.1f} MB/s, "
                  f"peak worker RSS {peak / 2**20:6.0f} MB (both workers)")
            os.remove(path)
    print(f"peak memory ratio largest/smallest input: {peaks[-1] / peaks[0]:.2f} "
          f"for {args.mb[-1] / args.mb[0]:.0f}x the input (goal: about 1)")


if __name__ == "__main__":
    main()
