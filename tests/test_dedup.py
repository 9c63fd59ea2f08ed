"""Dedup on real text with planted duplicates, run through real Ray tasks."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from curate.params import ConfigError
from curate.stages import dedup_graph as graph
from curate.stages import minhash as mh
from curate.stages.dedup import ExactDedup, MinHashDedup, _TaskRunner, plan_units


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def english(shared_data) -> list[str]:
    paragraphs = []
    for name in ("pg1342-0.txt", "pg11-0.txt"):
        text = (shared_data / "books" / "gutenberg" / name).read_text(encoding="utf-8-sig")
        paragraphs += [" ".join(p.split()) for p in text.split("\n\n") if len(p) > 300]
    return list(dict.fromkeys(paragraphs))


@pytest.fixture(scope="module")
def chinese(shared_data) -> list[str]:
    path = shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def _doc(doc_id: str, text: str | None, **extra) -> dict:
    return {"id": doc_id, "source": "test", "text": text, "url": extra.pop("url", None), "path": None, **extra}


def _run(rows: list[dict], tmp_path, shards: int = 3, workers: int = 2, name: str = "work", row_group_size=None, **params):
    """Write ``rows`` as shards (input order kept), run dedup, apply it; returns (summary, {id: row})."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(rows)), shards)):
        path = str(tmp_path / f"{name}-shard{i}.parquet")
        pq.write_table(table.take(pa.array(chunk, pa.int64())), path, row_group_size=row_group_size)
        paths.append(path)
    stage = MinHashDedup.from_config(params)
    workdir = str(tmp_path / name)
    summary = stage.run(paths, workdir, workers=workers)
    applier = MinHashDedup.from_config(params)  # a fresh object, as in a worker
    applier.load_decisions(workdir)
    out = {}
    for path in paths:
        result = applier.process(pq.read_table(path))
        applied = result.table.append_column("reason", pa.array(result.reasons, pa.string()))
        out.update({row["id"]: row for row in applied.to_pylist()})
    return summary, out


def _substitute(text: str, positions: list[int], token: str = "qqzx") -> str:
    words = text.split()
    for p in positions:
        words[p] = f"{token}{p}"
    return " ".join(words)


def test_planted_duplicates_on_real_text(shared_data, english, chinese, tmp_path):
    licences = shared_data / "neardup" / "cs336-fuzzy-duplicates"
    long_en = " ".join(english[40:44])
    boilerplate = " Subscribe to our newsletter for weekly updates on new books, reading lists and author interviews from our editors."
    rows = [_doc(f"en{i}", t) for i, t in enumerate(english[:120])]
    rows += [_doc(f"zh{i}", t) for i, t in enumerate(chinese[:120])]
    rows += [_doc("long_en", long_en), _doc("long_zh", "".join(chinese[200:203]))]
    for name, file in (("rails", "rails_mit"), ("react", "react_mit"), ("pytorch", "pytorch")):
        rows.append(_doc(f"lic_{name}", (licences / f"{file}_license.txt").read_text(encoding="utf-8")))
    rows += [_doc("boiler_a", english[130] + boilerplate), _doc("boiler_b", english[131] + boilerplate)]
    # Bad input is kept, never grouped: empty, null, blank, punctuation-only, binary noise.
    rows += [_doc("empty1", ""), _doc("empty2", ""), _doc("null1", None), _doc("blank", " \n\t "), _doc("punct", "!!! ...")]
    rows += [_doc("binary", bytes(range(1, 255)).decode("latin-1"))]
    planted = {
        "exact_en": ("en10", "exact-duplicate"),
        "exact_zh": ("zh7", "exact-duplicate"),
        "near_en": ("long_en", "near-duplicate"),
        "near_zh": ("long_zh", "near-duplicate"),
        "lic_react": ("lic_rails", "near-duplicate"),
    }
    rows += [
        _doc("exact_en", "  " + english[10].upper().replace(",", " ").replace(".", "") + "\n"),
        _doc("exact_zh", chinese[7].replace("，", ",") + " "),
        _doc("near_en", _substitute(long_en, [50, 300])),
        _doc("near_zh", "".join(chinese[200:203]).replace("的", "之", 2)),
    ]
    summary, out = _run(rows, tmp_path)
    rejected = {doc_id: (row["dup_of"], row["reason"]) for doc_id, row in out.items() if row["reason"]}
    assert rejected == planted
    for loser, (winner, _) in planted.items():
        assert out[loser]["dup_cluster_id"] == out[winner]["dup_cluster_id"] == winner
        assert out[loser]["dup_cluster_size"] == out[winner]["dup_cluster_size"] == 2
        assert out[winner]["reason"] is None and out[winner]["dup_of"] is None
    singles = [row for doc_id, row in out.items() if doc_id not in planted and doc_id not in {w for w, _ in planted.values()}]
    assert all(row["dup_cluster_size"] == 1 and row["dup_cluster_id"] == row["id"] for row in singles)
    assert summary["exact-duplicate"] == 2 and summary["near-duplicate"] == 3 and summary["docs"] == len(rows)
    assert (summary["bands"], summary["rows"]) == mh.optimal_bands(0.8, 128, 0.1, 0.9) == (14, 9)


def test_chain_of_near_duplicates_is_one_cluster(english, tmp_path):
    base = " ".join(english[60:66])
    assert len(base.split()) > 570
    chain = [base]
    for step in range(20):  # each link substitutes two more words: neighbours ~0.97, ends ~0.5
        chain.append(_substitute(chain[-1], [10 + 28 * step, 24 + 28 * step]))
    ends = [set(mh.python_shingles(tokens, 5)) for tokens in mh.token_strings([chain[0], chain[-1]])]
    assert len(ends[0] & ends[1]) / len(ends[0] | ends[1]) < 0.6  # only transitivity joins the ends
    rows = [_doc(f"other{i}", t) for i, t in enumerate(english[100:130])]
    rows += [_doc(f"link{i}", t) for i, t in reversed(list(enumerate(chain)))]  # link20 comes first
    summary, out = _run(rows, tmp_path, shards=4, partitions=5)
    links = [out[f"link{i}"] for i in range(len(chain))]
    assert {row["dup_cluster_id"] for row in links} == {"link20"}
    assert {row["dup_cluster_size"] for row in links} == {len(chain)}
    assert out["link20"]["reason"] is None
    assert all(row["reason"] == "near-duplicate" and row["dup_of"] == "link20" for row in links[:-1])
    assert all(out[f"other{i}"]["dup_cluster_size"] == 1 for i in range(30))
    assert summary["cc_rounds"] >= 2


def test_keep_quality_and_url_latest_fetch(english, tmp_path):
    base = " ".join(english[70:73])
    rows = [_doc(f"other{i}", t, quality_score=0.5) for i, t in enumerate(english[140:160])]
    rows += [
        _doc("q_low", base, quality_score=0.2),
        _doc("q_high", _substitute(base, [20]), quality_score=0.9),
        _doc("q_mid", _substitute(base, [40]), quality_score=None),
        _doc("q_exact", base.lower(), quality_score=0.95),  # exact group: the higher score wins there too
    ]

    def fetched(day: int) -> datetime:
        return datetime(2024, 1, day, tzinfo=timezone.utc)

    rows += [
        _doc("url_old", english[161], url="http://www.example.com/page/", fetch_time=fetched(1), quality_score=0.5),
        _doc("url_new", english[162], url="https://example.com/page#top", fetch_time=fetched(9), quality_score=0.5),
        _doc("url_mid", english[163], url="HTTP://EXAMPLE.com:80/page", fetch_time=fetched(5), quality_score=0.5),
        _doc("url_other", english[164], url="https://example.com/page?id=2", fetch_time=fetched(2), quality_score=0.5),
    ]
    _, out = _run(rows, tmp_path, keep="quality")
    assert {out[k]["dup_cluster_id"] for k in ("q_low", "q_high", "q_mid", "q_exact")} == {"q_exact"}
    assert out["q_low"]["reason"] == "exact-duplicate" and out["q_high"]["reason"] == "near-duplicate"
    assert out["q_exact"]["dup_cluster_size"] == 4 and out["q_exact"]["reason"] is None
    assert out["url_new"]["reason"] is None and out["url_new"]["dup_cluster_size"] == 3
    assert {out[k]["reason"] for k in ("url_old", "url_mid")} == {"url-duplicate"}
    assert {out[k]["dup_of"] for k in ("url_old", "url_mid")} == {"url_new"}
    assert out["url_other"]["dup_cluster_size"] == 1

    _, first = _run(rows, tmp_path, name="work_first", keep="first")
    assert first["q_high"]["dup_cluster_id"] == "q_low" and first["q_exact"]["reason"] == "exact-duplicate"


def test_same_decisions_whatever_the_partitioning_and_resume(english, tmp_path):
    rows = [_doc(f"p{i}", t) for i, t in enumerate(english[:80])]
    rows += [_doc(f"dup{i}", _substitute(english[i], [3])) for i in range(0, 80, 4) if len(english[i].split()) > 60]
    summary_a, out_a = _run(rows, tmp_path, workers=1, name="a", partitions=2)
    # b: small row groups, so the map tasks cut shards apart and span shard ends
    summary_b, out_b = _run(rows, tmp_path, workers=2, name="b", partitions=7, verify=False, row_group_size=9)
    assert out_a == out_b and summary_a["near-duplicate"] > 0
    units, sizes = plan_units(sorted(str(p) for p in tmp_path.glob("b-shard*.parquet")), 2, rows_per_task=10)
    assert len(units) == 8 and sum(sizes) == len(rows) and any(len(unit) > 1 for unit in units)
    markers = sorted(os.listdir(tmp_path / "a" / "_done"))
    assert markers and any(m.startswith("map0-") for m in markers)
    written = os.path.getmtime(tmp_path / "a" / "decisions.parquet")
    summary_again, out_again = _run(rows, tmp_path, workers=1, name="a", partitions=2)  # resumes from markers
    assert out_again == out_a and summary_again["docs"] == summary_a["docs"]
    assert os.path.getmtime(tmp_path / "a" / "decisions.parquet") == written  # nothing was recomputed


def _components_of(edges: np.ndarray, tmp_path, partitions: int) -> tuple[dict[int, int], int]:
    graph.write_symmetric(edges[:, 0], edges[:, 1], str(tmp_path / "cc" / "r0"), partitions, "input")
    stage = MinHashDedup()
    with _TaskRunner(str(tmp_path), 2) as runner:  # the stage's own task runner, on the module's Ray
        rounds = stage._components(runner.map, str(tmp_path), partitions)
    labels = pq.read_table(str(tmp_path / "labels")).to_pydict()
    return dict(zip(labels["node"], labels["label"])), rounds


def test_distributed_components_match_union_find_on_chain_and_random(tmp_path):
    rng = np.random.default_rng(3)
    chain_nodes = rng.permutation(np.arange(10_000, 12_000))  # a path with random node order
    chain = np.stack([chain_nodes[:-1], chain_nodes[1:]], axis=1)
    random_edges = rng.integers(0, 3000, size=(2500, 2))
    edges = np.concatenate([chain, random_edges]).astype(np.int64)
    labels, rounds = _components_of(edges, tmp_path, partitions=6)
    expected = graph.components_local(edges[:, 0], edges[:, 1])
    assert {n: labels.get(n, n) for n in expected} == expected
    assert set(labels[int(n)] for n in chain_nodes) == {int(chain_nodes.min())}
    assert rounds < 40


def test_params_are_validated():
    for bad in ({"bands": 9}, {"threshold": 1.5}, {"keep": "best"}, {"bands": 20, "rows": 10}, {"word_ngram": 0}):
        with pytest.raises(ConfigError):
            MinHashDedup.from_config(bad)
    assert MinHashDedup.from_config({"bands": 16, "rows": 8}).params.band_shape() == (16, 8)


def test_process_needs_decisions_and_types_are_fixed(tmp_path):
    stage = MinHashDedup()
    empty = pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    with pytest.raises(RuntimeError, match="load_decisions"):
        stage.process(empty)
    _, out = _run([_doc("a", "one two three four five six"), _doc("b", "seven eight nine ten")], tmp_path, shards=1)
    assert out["a"]["dup_cluster_size"] == 1
    stage.load_decisions(str(tmp_path / "work"))
    result = stage.process(empty)
    assert result.table.schema.field("dup_cluster_id").type == pa.string()
    assert result.table.schema.field("dup_cluster_size").type == pa.int64()
    assert result.table.schema.field("dup_of").type == pa.string()
    assert len(result.reasons) == 0 and result.table.num_rows == 0


def test_huge_document_is_compared_on_its_prefix(english, tmp_path):
    huge = " ".join(english[:300])
    huge = (huge + " ") * (1_300_000 // len(huge) + 1)
    changed = _substitute(huge, [5000, 9000])
    rows = [_doc(f"p{i}", t) for i, t in enumerate(english[300:320])] + [_doc("huge", huge), _doc("huge_edit", changed)]
    summary, out = _run(rows, tmp_path, shards=2, max_text_chars=1_000_000)
    assert len(huge) > 1_000_000
    assert out["huge_edit"]["reason"] == "near-duplicate" and out["huge_edit"]["dup_of"] == "huge"
    assert summary["docs"] == len(rows)


def test_exact_dedup_stage_skips_minhash(english, tmp_path):
    rows = [_doc(f"p{i}", t) for i, t in enumerate(english[:20])]
    rows += [_doc("copy", english[3].upper()), _doc("near", _substitute(" ".join(english[4:6]), [7]))]
    rows += [_doc("near_src", " ".join(english[4:6]))]
    stage = ExactDedup.from_config({})
    assert stage.params.fuzzy is False and stage.name == "exact_dedup"
    paths = [str(tmp_path / "s.parquet")]
    pq.write_table(pa.Table.from_pylist(rows), paths[0])
    summary = stage.run(paths, str(tmp_path / "work"), workers=2)
    stage.load_decisions(str(tmp_path / "work"))
    result = stage.process(pq.read_table(paths[0]))
    reasons = dict(zip(result.table["id"].to_pylist(), pa.array(result.reasons, pa.string()).to_pylist()))
    assert reasons["copy"] == "exact-duplicate" and reasons["near"] is None
    assert "cc_rounds" not in summary and summary["exact-duplicate"] == 1
