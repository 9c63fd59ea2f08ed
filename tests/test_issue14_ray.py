"""A run cleans up after itself (issue 14): no Ray process outliving a killed driver for long, no Ray
temporary folder left behind (a finished run's: test_issue14_integrity's unreadable-folder run). A real
`curate run` subprocess."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CURATE = [sys.executable, "-m", "curate.cli"]


def ray_root() -> str:
    return os.path.join(tempfile.gettempdir(), "ray")


def session_of(pid: int, since: float) -> list[str]:
    """Ray names the session folder of a driver that starts it after the driver's pid. Pids are reused, and
    folders of runs that ended without their clean-up (a test's own ``ray.init``, ``ray start`` clusters)
    stay in Ray's temporary root: only a folder made since ``since`` is this driver's."""
    folders = glob.glob(os.path.join(ray_root(), f"session_*_{pid}"))
    return [f for f in folders if os.stat(f).st_ctime >= since - 1.0]


def holders(folder: str) -> list[int]:
    """Processes with a file open under ``folder`` (every Ray process of a session logs there)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link.startswith(folder) for link in links):
            found.append(int(pid))
    return found


def write_jsonl(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"document {i} " + "word " * (i % 50)}) + "\n")


def test_killing_the_driver_takes_its_ray_processes_and_folder_with_it(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", 3000)
    (tmp_path / "pipeline.yaml").write_text(
        "inputs:\n  - {source: web, format: jsonl, paths: [in.jsonl]}\n"
        "stages:\n  - length\n  - curate.tests.pipeline_stages:Slow: {seconds_per_batch: 1.0}\n"
        "run: {batch_rows: 50, executor: ray}\n")  # a small run would run in process, without Ray
    started = time.time()
    proc = subprocess.Popen([*CURATE, "run", "pipeline.yaml", "-o", "out", "--no-progress", "-w", "1"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        session = []
        while time.time() < deadline and not (session and len(holders(session[0])) >= 4):
            time.sleep(0.3)
            session = session_of(proc.pid, started)
        assert session, "the run never started Ray"
        time.sleep(2)  # a worker is busy with the slow stage
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and (holders(session[0]) or os.path.exists(session[0])):
            time.sleep(0.5)
        assert holders(session[0]) == [], "Ray processes outlived the killed driver"
        assert not os.path.exists(session[0])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
