"""Dedup's global step with its shards and work folder in an object store (moto's S3 server, real Ray).

On a cluster without a shared disk every node reads the shards and writes the step files, markers and
decisions under ``s3://…/work/dedup``; the decisions must equal those of the same run on local files.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from curate import storage
from curate.stages.dedup import MinHashDedup
from curate.tests.remote_servers import MotoServer

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_and_ray():
    """moto's S3 server, its endpoint and credentials in the environment *before* Ray starts (Ray's
    workers inherit the driver's environment, as on a cluster node where they are set)."""
    with MotoServer() as s3, pytest.MonkeyPatch.context() as env:
        for key, value in s3.env().items():
            env.setenv(key, value)
        env.delenv("RAY_ADDRESS", raising=False)
        s3.client().create_bucket(Bucket="runs")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield s3
        finally:
            ray.shutdown()


def _rows(shared_data) -> list[dict]:
    text = (shared_data / "books" / "gutenberg" / "pg1342-0.txt").read_text(encoding="utf-8-sig")
    english = list(dict.fromkeys(" ".join(p.split()) for p in text.split("\n\n") if len(p) > 300))[:64]
    path = shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl"
    chinese = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()[:40]]
    rows = [{"id": f"en{i}", "text": t, "url": None} for i, t in enumerate(english[:60])]
    rows += [{"id": f"zh{i}", "text": t, "url": None} for i, t in enumerate(chinese)]
    long_en = " ".join(english[20:24]).split()
    long_en[40], long_en[200] = "qqzx1", "qqzx2"
    rows += [
        {"id": "long_en", "text": " ".join(english[20:24]), "url": None},
        {"id": "near_en", "text": " ".join(long_en), "url": None},
        {"id": "exact_zh", "text": chinese[3] + " ", "url": None},
        {"id": "url_a", "text": english[62], "url": "https://www.example.com/a/"},
        {"id": "url_b", "text": english[63], "url": "http://example.com/a"},
    ]
    return rows


def _decisions(stage: MinHashDedup, workdir: str) -> list[dict]:
    stage.load_decisions(workdir)
    return sorted(stage._decisions.to_pylist(), key=lambda row: row["id"])


def test_dedup_with_shards_and_workdir_in_s3_equals_local(s3_and_ray, shared_data, tmp_path):
    table = pa.Table.from_pylist(_rows(shared_data))
    local, remote = [], []
    for i, chunk in enumerate(np.array_split(np.arange(table.num_rows), 3)):
        path = str(tmp_path / f"shard{i}.parquet")
        pq.write_table(table.take(pa.array(chunk, pa.int64())), path)
        local.append(path)
        remote.append(f"s3://runs/r1/work/segment0/shard{i}.parquet")
        storage.write_bytes(remote[-1], (tmp_path / f"shard{i}.parquet").read_bytes())

    stage = MinHashDedup.from_config({"partitions": 3})
    here = stage.run(local, str(tmp_path / "work"), workers=2)
    workdir = "s3://runs/r1/work/dedup"
    there = stage.run(remote, workdir, workers=2)
    assert not os.path.exists("s3:") and not (tmp_path / "s3:").exists()  # nothing landed on a local path

    expected = _decisions(MinHashDedup(), str(tmp_path / "work"))
    found = _decisions(MinHashDedup(), workdir)
    assert found == expected
    reasons = {row["id"]: (row["reason"], row["dup_of"]) for row in found if row["reason"]}
    assert reasons == {"near_en": ("near-duplicate", "long_en"), "exact_zh": ("exact-duplicate", "zh3"),
                       "url_b": ("url-duplicate", "url_a")}
    for key in ("docs", "url-duplicate", "exact-duplicate", "near-duplicate", "candidate_pairs", "clusters"):
        assert there[key] == here[key], key
    assert set(there["seconds"]) >= {"map", "url", "exact", "bands", "verify1", "verify2", "cc", "final", "release"}

    # Every task's marker is in the bucket: a rerun (another driver, another node) resumes from them.
    markers = storage.listdir(f"{workdir}/_done")
    assert any(m.startswith("map0-") for m in markers) and "final0-0.json" in markers
    # A tampered decisions file survives the rerun: nothing was recomputed, every step was found done.
    decisions = f"{workdir}/decisions.parquet"
    storage.write_table(decisions, storage.read_table(decisions).slice(1))
    again = stage.run(remote, workdir, workers=2)
    assert again["near-duplicate"] == there["near-duplicate"]
    assert storage.read_table(decisions).num_rows == len(expected) - 1
