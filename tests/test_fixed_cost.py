"""Issue 16 items 1 and 7: a small run executes in process (no Ray to start or stop) with the output a Ray run
gives; the executor is chosen by ``run.executor``, said in the log and the manifest; and each run records
where its time went (stats/timing, the ``timing`` view, the table ``curate stats`` prints). Real `curate run`
subprocesses; one of them starts Ray."""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from curate import stats
from curate.params import ConfigError
from curate.pool import IN_PROCESS, RAY, choose_executor

CURATE = [sys.executable, "-m", "curate.cli"]


def cli(*args, cwd) -> subprocess.CompletedProcess:
    """The command in a process of its own; ``.pid`` is that process (Ray names its session after it)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([*CURATE, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    stdout, stderr = proc.communicate(timeout=600)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    done.pid = proc.pid
    return done


def ray_sessions_of(pid: int) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), "ray", f"session_*_{pid}"))


def write_with_duplicates(path: Path) -> None:
    """Distinct documents, exact copies and one-word edits, so that dedup has clusters to decide."""
    rng = random.Random(7)
    words = [f"w{i}" for i in range(2000)]
    docs = [" ".join(rng.choices(words, k=rng.randint(40, 120))) for _ in range(400)]
    for i in range(120):
        copy = rng.choice(docs[:400]).split()
        if i % 2:
            copy[rng.randrange(len(copy))] = "edited"
        docs.append(" ".join(copy))
    rng.shuffle(docs)
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"text": text, "url": f"https://example.org/{i % 480}"}) + "\n")


def landed(output: Path) -> tuple[list, list]:
    con = stats.connect(str(output))
    docs = con.execute("SELECT id, text, dup_cluster_id, dup_cluster_size, dup_of FROM docs ORDER BY id").fetchall()
    rejects = con.execute("SELECT id, reject_stage, reject_reason, dup_of FROM rejects ORDER BY id").fetchall()
    return docs, rejects


def test_a_small_run_runs_in_process_with_the_output_of_a_ray_run(tmp_path):
    write_with_duplicates(tmp_path / "in.jsonl")
    common = ["-i", "in.jsonl", "-f", "jsonl", "--stages", "length,dedup", "--no-progress", "-w", "2"]

    local = cli("run", *common, "-o", "local", cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    said = " ".join((local.stdout + local.stderr).split())
    assert "executor: in-process (small run" in said and "in process, no Ray" in said, said[-1500:]
    manifest = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["executor"]["name"] == IN_PROCESS
    # no Ray was started: its watcher would have removed the session folder, but not the log line's promise
    assert not ray_sessions_of(local.pid)

    forced = cli("run", *common, "-o", "ray", "--set", "run.executor=ray", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-2000:]
    said = " ".join((forced.stdout + forced.stderr).split())
    assert "executor: ray (run.executor=ray)" in said and "Ray start" in said, said[-1500:]
    assert json.loads((tmp_path / "ray" / "manifest.json").read_text())["executor"]["name"] == RAY

    local_docs, local_rejects = landed(tmp_path / "local")
    assert (local_docs, local_rejects) == landed(tmp_path / "ray")
    assert any(r[2] == "near-duplicate" for r in local_rejects) and any(r[2] == "exact-duplicate" for r in local_rejects)

    # where the time went: the global stage's own steps and Ray's start and stop, per run, in stats/timing
    con = stats.connect(str(tmp_path / "ray"))
    steps = {(stage, step) for stage, step in con.execute("SELECT stage, step FROM timing").fetchall()}
    assert {(None, "ray start"), (None, "ray stop"), (None, "plan"), (None, "ids"), (None, "stats and manifest"),
            ("dedup", "map"), ("dedup", "final"), ("read, length", "tasks"), ("dedup", "tasks")} <= steps, steps
    executors = {row[0] for row in stats.connect(str(tmp_path / "local")).execute("SELECT executor FROM timing").fetchall()}
    assert executors == {IN_PROCESS}
    assert not {s for s in stats.connect(str(tmp_path / "local")).execute("SELECT step FROM timing").fetchall()
                if s[0].startswith("ray")}
    shown = cli("stats", "ray", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = " ".join(shown.stdout.split())
    assert "where the time went" in text and "dedup: map" in text and "ray start" in text, text[-2000:]

    # the same command again: resumed (nothing left to do), in process as before
    again = cli("run", *common, "-o", "local", cwd=tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout


def test_an_in_process_run_resumes_where_it_stopped(tmp_path):
    """A task that failed on every try is reported and the rest is kept; the rerun does only that task."""
    for name in ("a", "b", "c"):
        with open(tmp_path / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i in range(30):
                f.write(json.dumps({"text": f"{name} document number {i} with some words"}) + "\n")
    marker = tmp_path / "explode"
    marker.write_text("")
    (tmp_path / "p.yaml").write_text(
        "inputs:\n  - {source: web, format: jsonl, paths: ['*.jsonl']}\n"
        "stages:\n  - length\n  - curate.tests.test_fixed_cost:RaiseWhileFileExists: {path: " + json.dumps(str(marker))
        + ", text: 'b document'}\nrun: {max_retries: 1, executor: in-process}\n")
    first = cli("run", "p.yaml", "-o", "out", "--no-progress", cwd=tmp_path)
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-2000:]
    assert "1 task(s) failed" in first.stderr and "web-b" in first.stderr
    marker.unlink()
    second = cli("run", "p.yaml", "-o", "out", "--no-progress", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "1 tasks run, 2 already done" in " ".join(second.stdout.split())
    con = stats.connect(str(tmp_path / "out"))
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM docs").fetchone() == (90, 90)
    assert con.execute("SELECT count(DISTINCT run) FROM timing").fetchone()[0] == 2


def test_the_choice_of_executor():
    small = dict(workers=None, address=None, work_mb=1.0, limit_mb=32.0)
    assert choose_executor("auto", **small)[0] == IN_PROCESS
    assert choose_executor("auto", **{**small, "work_mb": 33.0})[0] == RAY
    assert choose_executor("auto", **{**small, "work_mb": 500.0, "workers": 1})[0] == IN_PROCESS
    assert choose_executor("ray", **small) == (RAY, "run.executor=ray")
    assert choose_executor("in-process", **{**small, "work_mb": 500.0})[0] == IN_PROCESS
    assert choose_executor("auto", **{**small, "address": "10.0.0.1:6379"})[0] == RAY
    with pytest.raises(ConfigError, match="run.executor"):
        choose_executor("in-process", **{**small, "address": "10.0.0.1:6379"})


def test_in_process_with_a_cluster_address_is_a_usage_error(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "a document"}\n')
    done = cli("run", "-i", "in.jsonl", "-f", "jsonl", "--stages", "length", "-o", "out", "--no-progress",
               "--address", "127.0.0.1:1", "--set", "run.executor=in-process", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "run.executor" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "docs").exists()


EMBEDDED_RAY = r"""
import json, os, sys
import ray
import ray._private.services as services
import ray._private.utils as ray_utils
from ray._private.node import Node
from curate import pool

before = (Node.start_raylet, services.start_ray_process, ray_utils.get_dashboard_dependency_error)
assert pool.start_ray(2, None)
held = pool._agent_port.getsockname()[1]
node = ray.nodes()[0]
raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid

def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]

agents = {}
for pid in children(raylet):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = f.read().replace(b"\0", b" ").decode()
    with open(f"/proc/{pid}/stat") as f:
        nice = int(f.read().rsplit(")", 1)[1].split()[16])
    for name, script in (("dashboard", "dashboard/agent.py"), ("runtime_env", "runtime_env/agent/main.py")):
        if script in cmd:
            agents[name] = nice

@ray.remote
def env_var():
    return os.environ.get("CURATE_TEST_VAR")

out = {
    "held": held, "node": {k: node[k] for k in ("RuntimeEnvAgentPort", "MetricsAgentPort", "MetricsExportPort",
                                                 "DashboardAgentListenPort")},
    "agents": agents,
    "plain": ray.get(env_var.remote()),
    # a task with a runtime environment of its own goes through the runtime-env agent, on the held port
    "with_env": ray.get(env_var.options(runtime_env={"env_vars": {"CURATE_TEST_VAR": "set"}}).remote()),
    "restored": before == (Node.start_raylet, services.start_ray_process, ray_utils.get_dashboard_dependency_error),
    "minimal": ray_utils.get_dashboard_dependency_error() is not None,
    "quick_check_agrees": (pool._dashboard_dependency_error(ray_utils.get_dashboard_dependency_error) is None)
                          == (ray_utils.get_dashboard_dependency_error() is None),
}
pool.stop_ray()
out["released"] = pool._agent_port is None
print(json.dumps(out))
"""


def test_an_embedded_ray_starts_without_waiting_for_its_agents(tmp_path):
    """The embedded Ray of a run: the raylet is given its agents' ports instead of waiting for them (curate.pool
    ``_fewer_waits``); what the node records is what the agents themselves would report (-1: a minimal dashboard
    agent opens none), the runtime-env agent serves the port held for it, and both agents run at nice 19. Ray's
    functions are Ray's again after the start, and the port is let go at the stop."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", EMBEDDED_RAY], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["quick_check_agrees"] and out["restored"] and out["released"], out
    assert out["node"]["RuntimeEnvAgentPort"] == out["held"], out
    assert (out["plain"], out["with_env"]) == (None, "set"), out
    if out["minimal"]:  # a plain `pip install ray`, as curate depends on it
        assert out["node"]["MetricsAgentPort"] == out["node"]["MetricsExportPort"] == -1, out
        assert out["node"]["DashboardAgentListenPort"] == -1, out
    niceness = 19 if shutil.which("nice") else 0  # without a `nice` program they run as Ray starts them
    assert out["agents"] == {"dashboard": niceness, "runtime_env": niceness}, out


# ---------------------------------------------------------------- a stage for the resume test

from dataclasses import dataclass  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from curate.stage import Stage, StageResult  # noqa: E402


@dataclass
class RaiseParams:
    path: str = ""
    text: str = ""


class RaiseWhileFileExists(Stage):
    """While the file ``path`` exists, returns an undeclared column for a batch holding ``text``, which fails
    its task (a stage that raises only rejects the rows it raises on): a task that fails, then works."""

    name = "raise_while_file_exists"
    Params = RaiseParams

    def process(self, table: pa.Table) -> StageResult:
        if os.path.exists(self.params.path) and pc.any(pc.match_substring(table["text"], self.params.text)).as_py():
            return StageResult(table.append_column("surprise", pa.array([1] * table.num_rows, pa.int64())))
        return StageResult(table)


def test_the_driver_builds_ids_and_timing_without_pandas(tmp_path):
    """``pa.array`` imports pandas on its first call (0.2 s), which a Ray run's driver has no other use for:
    the ids step and the timing file are built from DuckDB's Arrow output and from buffers
    (``curate.arrays``), in a fresh interpreter without importing pandas, and they hold what the list-based
    way gives: the colliding id renamed, the timing rows ``from_pylist`` builds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.arrays import numbers_array, string_array, table_from_rows
    from curate.timing import TIMING_SCHEMA

    for name, ids in (("a", ["x", "1", "2"]), ("b", ["y", "1", "3"])):
        pq.write_table(pa.table({"id": ids, "source": ["s"] * 3, "text": ["t"] * 3}), str(tmp_path / f"{name}.parquet"))
    check = ("import sys, glob; from curate import ids; from curate.timing import RunTimer; "
             f"print(ids.make_unique(sorted(glob.glob({str(tmp_path / '*.parquet')!r})), {str(tmp_path / 'work')!r})); "
             "t = RunTimer(); t.add('plan', 0.5); t.add('tasks', 1.25, stage='read', segment=0, tasks=3); "
             f"t.write({str(tmp_path / 'stats')!r}); print('pandas' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["{'colliding_ids': 1, 'renamed': 2}", "False"]
    renamed = pq.read_table(str(tmp_path / "a.parquet")).to_pylist()
    assert renamed[1]["given_id"] == "1" and renamed[1]["id"] != "1" and renamed[0]["given_id"] is None
    timing = pq.read_table(glob.glob(str(tmp_path / "stats" / "timing" / "*.parquet"))[0])
    rows = timing.to_pylist()
    assert [(r["step"], r["segment"], r["tasks"], r["seconds"]) for r in rows] == [("plan", None, None, 0.5),
                                                                                  ("tasks", 0, 3, 1.25)]
    assert timing.equals(pa.Table.from_pylist(rows, schema=TIMING_SCHEMA))
    values = ["a", None, "é", ""]
    assert string_array(values).equals(pa.array(values, pa.string()))
    for kind in (pa.int32(), pa.int64(), pa.float32(), pa.float64()):
        assert numbers_array([1, None, 3], kind).equals(pa.array([1, None, 3], kind))
    assert table_from_rows([{"step": "s"}], TIMING_SCHEMA).to_pylist()[0]["seconds"] is None
