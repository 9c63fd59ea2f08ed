"""`curate run --address` on an existing Ray cluster started with `ray start` (token authentication on)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from curate import stats

CURATE = [sys.executable, "-m", "curate.cli"]


def _session_of(port: str) -> str:
    """The session directory of the cluster whose GCS listens on ``port``."""
    found = subprocess.run(["pgrep", "-af", "--", f"--gcs_server_port={port}"], capture_output=True, text=True)
    for line in found.stdout.splitlines():
        for arg in line.split():
            if arg.startswith("--log_dir="):
                return os.path.dirname(arg.split("=", 1)[1])
    raise AssertionError(f"no GCS server on port {port}: {found.stdout!r}")


def _stop_session(session_dir: str) -> None:
    """Stop only this test's cluster (`ray stop` would stop every Ray on the machine)."""
    name = os.path.basename(session_dir)
    found = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextlib.contextmanager
def two_nodes(env: dict, token_dir: Path, port_offset: int, *, worker_cpus: int = 1) -> Iterator[tuple[str, str]]:
    """A head node (1 CPU) and a worker node started with `ray start`, as a user starts them, with token
    authentication (a token of the test's own, in ``env``); the worker on its own loopback address
    (127.0.0.2), as a second machine has its own. Yields (address, session folder); stops only this
    cluster at the end."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = str(20000 + (os.getpid() + port_offset) % 20000)
    token = token_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    env.update(RAY_AUTH_TOKEN_PATH=str(token), RAY_AUTH_MODE="token")
    head = subprocess.run([ray_cli, "start", "--head", "--num-cpus", "1", "--port", port,
                           "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert head.returncode == 0, head.stderr
    session_dir = _session_of(port)
    try:
        address = f"127.0.0.1:{port}"
        worker = subprocess.run([ray_cli, "start", "--address", address, "--num-cpus", str(worker_cpus),
                                 "--node-ip-address", "127.0.0.2", "--disable-usage-stats"],
                                capture_output=True, text=True, timeout=180, env=env)
        assert worker.returncode == 0, worker.stderr
        yield address, session_dir
    finally:
        _stop_session(session_dir)


def _kill_node(session_dir: str, ip: str) -> int:
    """SIGKILL every process of the node at ``ip`` in this test's cluster (its raylet with the object
    store, log monitor ...; its workers end with their raylet); returns how many were killed."""
    name = os.path.basename(session_dir)
    found = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True)
    killed = 0
    for pid in found.stdout.split():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"node_ip_address={ip}" in args or f"node-ip-address={ip}" in args:
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def test_runs_on_an_existing_cluster_given_its_address(tmp_path):
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = str(20000 + os.getpid() % 20000)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    # as a user sets up token authentication: a token first (`ray get-auth-token --generate` writes
    # ~/.ray/auth_token; here a file of this test's own), then `ray start`. Without a token Ray 2.60
    # starts the cluster with authentication off, which this test must never rely on.
    token_path = tmp_path / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    env.update(RAY_AUTH_TOKEN_PATH=str(token_path), RAY_AUTH_MODE="token")
    started = subprocess.run([ray_cli, "start", "--head", "--num-cpus", "2", "--port", port,
                              "--include-dashboard=false", "--disable-usage-stats"],
                             capture_output=True, text=True, timeout=180, env=env)
    assert started.returncode == 0, started.stderr
    assert "Token authentication is disabled" not in started.stdout + started.stderr
    session_dir = _session_of(port)
    try:
        address = next(line.split("--address=")[1].strip().strip("'")
                       for line in (started.stdout + started.stderr).splitlines() if "--address=" in line)
        with open(tmp_path / "in.jsonl", "w") as f:
            for i in range(100):
                f.write(json.dumps({"text": f"document {i}"}) + "\n")
        # Ray 2.60: a client that names an address sends the cluster's token only with RAY_AUTH_MODE=token
        done = subprocess.run([*CURATE, "run", "--input", "in.jsonl", "--format", "jsonl", "--stages", "length",
                               "--address", address, "-o", "out", "--no-progress"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              env=env)
        assert done.returncode == 0, done.stderr
        assert stats.connect(str(tmp_path / "out")).execute("SELECT count(*) FROM docs").fetchone()[0] == 100
        assert "Ray start" in done.stdout
        # the cluster really checks: a client holding another token is turned away with a message, exit 1
        wrong = tmp_path / "wrong_token"
        wrong.write_text(secrets.token_hex(32))
        refused = subprocess.run([*CURATE, "run", "--input", "in.jsonl", "--format", "jsonl", "--stages", "length",
                                  "--address", address, "-o", "out2", "--no-progress"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=180,
                                 env={**env, "RAY_AUTH_TOKEN_PATH": str(wrong)})
        assert refused.returncode == 1, refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        _stop_session(session_dir)


def test_two_nodes_remote_inputs_and_losing_the_worker_node(tmp_path, shared_data):
    """A head and a worker node started with `ray start` (token auth), inputs served over HTTP and S3 (moto's
    server), the output in the S3 store: no disk is shared. Tasks run on both nodes; then the worker node is
    killed mid-run (every process of it, with SIGKILL, as when a machine goes away): the run still finishes,
    its lost tasks done on the head node, dedup's global step then runs on what is left, and the output
    equals a run without a cluster.
    """
    import duckdb
    import pytest

    from curate.tests.remote_servers import HttpServer, MotoServer

    pytest.importorskip("s3fs")
    served = tmp_path / "served"
    served.mkdir()
    sample = (shared_data / "warc" / "dolma" / "sample-0000.warc.gz").read_bytes()
    names = [f"part-{i:02d}.warc.gz" for i in range(8)]
    for name in names:  # 8 tasks of 10 concatenated copies (per-record gzip: still one valid WARC each)
        (served / name).write_bytes(sample * 10)
    with HttpServer(served) as http, MotoServer() as s3:
        client = s3.client()
        client.create_bucket(Bucket="crawl-data")
        client.create_bucket(Bucket="curated")

        def committed() -> int:  # finished tasks: stats objects directly under run/stats/
            listed = client.list_objects_v2(Bucket="curated", Prefix="run/stats/").get("Contents", [])
            return sum(1 for o in listed if o["Key"].count("/") == 2 and o["Key"].endswith(".parquet"))
        for name in names[4:]:
            client.upload_file(str(served / name), "crawl-data", f"cc/{name}")
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN") and not k.startswith("AWS_")}
        env.update(s3.env())
        inputs = [f"{http.url}/{name}" for name in names[:4]] + ["s3://crawl-data/cc/*.warc.gz"]
        args = ["--format", "warc", "--stages", "extract,length,dedup", "--no-progress"]
        with two_nodes(env, tmp_path, 7, worker_cpus=2) as (address, session_dir):
            run = subprocess.Popen([*CURATE, "run", "--input", *inputs, *args, "--address", address,
                                    "-o", "s3://curated/run/"],
                                   cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 240
                while committed() < 3 and run.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert run.poll() is None, "the run ended before the worker node could be killed"
                killed_after = committed()
                assert _kill_node(session_dir, "127.0.0.2") >= 1
                out, err = run.communicate(timeout=300)
                assert run.returncode == 0, err
                assert killed_after < 8
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait()
        done = json.loads(client.get_object(Bucket="curated", Key="run/manifest.json")["Body"].read())
        nodes = {t.get("node") for t in done["tasks"].values()}
        assert len(nodes) == 2, f"tasks did not run on two nodes: {nodes}"
        assert done["complete"] and sum(t["segment"] == 0 for t in done["tasks"].values()) == 8
        (tmp_path / "out" / "docs").mkdir(parents=True)
        for o in client.list_objects_v2(Bucket="curated", Prefix="run/docs/")["Contents"]:
            client.download_file("curated", o["Key"], str(tmp_path / "out" / "docs" / o["Key"].split("/")[-1]))
        local = subprocess.run([*CURATE, "run", "--input", *(str(served / n) for n in names), *args, "-o", "local"],
                               cwd=tmp_path, env={k: v for k, v in env.items() if not k.startswith("RAY_AUTH")},
                               capture_output=True, text=True, timeout=300)
        assert local.returncode == 0, local.stderr

    def docs(out):
        return duckdb.connect().execute(f"SELECT url, text FROM read_parquet('{tmp_path / out}/docs/*.parquet') "
                                        "ORDER BY url, text").fetchall()

    assert docs("out") == docs("local") != []
