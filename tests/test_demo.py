"""`curate demo` end to end: every planted problem of the demo input is handled and visible in DuckDB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curate import stats
from curate.demo_data import EXACT_DUPLICATES, demo_pages


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    # run the way `make demo` does on a fresh clone: the console script, from a folder that holds a
    # `curate/` source folder (here a decoy), which must never shadow the installed package in any process
    cwd = tmp_path_factory.mktemp("checkout")
    (cwd / "curate").mkdir()
    (cwd / "curate" / "__init__.py").write_text("raise ImportError('the decoy curate/ folder was imported')\n")
    directory = cwd / "curate-demo"
    cli = str(Path(sys.executable).parent / "curate")
    done = subprocess.run([cli, "demo", "curate-demo", "--workers", "2"], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return directory, done.stdout


def query(directory, sql):
    return stats.connect(str(directory / "out")).execute(sql).fetchall()


def test_demo_prints_the_funnel_and_queries(demo_run):
    _, printed = demo_run
    for expected in ("funnel", "extract", "langid", "dedup", "pii", "near-duplicate", "by language"):
        assert expected in printed


def test_no_stage_raised_on_any_document(demo_run):
    directory, _ = demo_run
    assert query(directory, "SELECT reject_reason, count(*) FROM rejects WHERE reject_reason LIKE 'error:%' "
                            "OR reject_reason LIKE 'extract-error:%' GROUP BY ALL") == []


def test_every_document_lands_once(demo_run):
    directory, _ = demo_run
    ids = [r[0] for r in query(directory, "SELECT id FROM docs UNION ALL SELECT id FROM rejects")]
    assert len(ids) == len(set(ids))
    html_pages = len(demo_pages())
    web = query(directory, "SELECT count(*) FROM (SELECT id FROM docs WHERE source = 'web' "
                           "UNION ALL SELECT id FROM rejects WHERE source = 'web')")[0][0]
    assert web == html_pages


def test_planted_duplicates_are_caught(demo_run):
    directory, _ = demo_run
    reasons = dict(query(directory, "SELECT reject_reason, count(*) FROM rejects WHERE reject_stage = 'dedup' GROUP BY ALL"))
    assert reasons.get("exact-duplicate", 0) >= len(EXACT_DUPLICATES)
    near = sum(1 for p in demo_pages() if p.kind == "near-duplicate")
    assert reasons.get("near-duplicate", 0) >= near
    # every removed copy points at a kept document of its cluster
    orphans = query(directory, "SELECT count(*) FROM rejects r WHERE reject_stage = 'dedup' AND NOT EXISTS "
                               "(SELECT 1 FROM docs d WHERE d.dup_cluster_id = r.dup_cluster_id)")[0][0]
    assert orphans == 0


def test_languages_toxicity_and_pii(demo_run):
    directory, _ = demo_run
    kept_langs = {r[0] for r in query(directory, "SELECT DISTINCT lang FROM docs WHERE source = 'web'")}
    assert kept_langs == {"en", "zh"}
    dropped = {r[0] for r in query(directory, "SELECT lang FROM rejects WHERE reject_reason = 'langid:not-allowed'")}
    assert {"de", "fr", "es"} <= dropped
    toxic = query(directory, "SELECT count(*) FROM rejects WHERE reject_stage = 'detox'")[0][0]
    assert toxic == sum(1 for p in demo_pages() if p.kind == "toxic")
    texts = " ".join(r[0] for r in query(directory, "SELECT text FROM docs"))
    for planted in ("13812345678", "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "11010519491231002X",
                    "81.2.69.142", "alice.wong@example.com"):
        assert planted not in texts
    for placeholder in ("<PHONE>", "<CARD>", "<IBAN>", "<CN_ID>", "<IP>", "<EMAIL>"):
        assert placeholder in texts


def test_code_gets_code_rules_only(demo_run):
    directory, _ = demo_run
    stages_seen = {r[0] for r in query(directory, "SELECT DISTINCT stage FROM stats WHERE source = 'code'")}
    assert "code_quality" in stages_seen and "langid" not in stages_seen and "gopher_quality" not in stages_seen
    assert query(directory, "SELECT count(*) FROM docs WHERE source = 'code' AND language = 'Python'")[0][0] >= 5
    skipped = query(directory, "SELECT r.reason FROM (SELECT unnest(reasons) AS r FROM stats WHERE source = 'code') "
                               "WHERE r.kind = 'skip'")
    assert {"vendored-dir", "minified"} <= {r[0] for r in skipped}


def test_rerunning_the_demo_resumes_and_does_nothing(demo_run):
    directory, _ = demo_run
    again = subprocess.run([str(Path(sys.executable).parent / "curate"), "demo", "curate-demo", "--workers", "2"],
                           cwd=directory.parent, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert "this run is already complete" in " ".join(again.stdout.split())


def test_tokenizer_trained_extended_and_corpus_tokenized(demo_run):
    import json

    import numpy as np

    directory, _ = demo_run
    assert (directory / "tokenizer" / "tokenizer.model").is_file()
    report = json.loads((directory / "tokenizer-zh" / "report.json").read_text())
    assert report["dead_after"] == 0 and report["vocab_size"] > report["base_vocab_size"]
    shards = sorted((directory / "tokens").rglob("*.bin"))
    assert shards
    tokens = sum(np.memmap(p, dtype=np.uint16, mode="r").size for p in shards)
    assert tokens > 10_000
