"""Dedup quality: planted near-duplicates of real documents, scored against exact Jaccard.

Real documents from ../shared/data (English books and Chinese novels cut into
~3 KB documents, Chinese Wikipedia paragraphs, English news articles) get
variants at known edit rates (word or character substitutions, insertions,
deletions, reordered paragraphs, added boilerplate); other documents share a
boilerplate block without being duplicates. The stage runs on Ray; the truth is
the exact Jaccard of the same shingles the stage uses.

Goals (issue 4, threshold 0.8): pairs with true Jaccard >= 0.85 end in one
cluster with recall >= 0.95; every removed document has true Jaccard >= 0.7 to
a member of its cluster (precision >= 0.98); no cluster loses all its members.

    .venv/bin/python -m curate.benchmarks.dedup_quality [--originals 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.params import parse_scalar
from curate.stages import minhash as mh

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
BOILERPLATE = (
    "Home | News | Sports | Weather | Contact us. Sign up for our newsletter to get the latest stories delivered "
    "to your inbox every morning. Copyright 2024 Example Media Group. All rights reserved. Privacy policy. "
    "Terms of service. Cookie settings. Follow us on social media for updates and behind the scenes coverage."
)
BOILERPLATE_ZH = "首页 | 新闻 | 体育 | 天气 | 联系我们。订阅我们的新闻简报，每天早上将最新报道发送到您的邮箱。版权所有 2024 示例传媒集团。隐私政策。服务条款。"


def _chunks(text: str, size: int) -> list[str]:
    out, current = [], []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        current.append(paragraph)
        if sum(len(p) for p in current) >= size:
            out.append("\n\n".join(current))
            current = []
    return out


def _strip_gutenberg(text: str) -> str:
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start >= 0:
        text = text[text.find("\n", start) + 1 :]
    if end >= 0:
        text = text[: text.find("*** END OF")]
    return text


def real_documents(data: Path = DATA) -> list[tuple[str, str]]:
    """(kind, text) of real documents of about 3 KB: kind is 'en' or 'zh'."""
    docs: list[tuple[str, str]] = []
    for path in sorted((data / "books" / "gutenberg").glob("*.txt")):
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig") if not path.stem.endswith("-8") else raw.decode("latin-1")
        docs += [("en", c) for c in _chunks(_strip_gutenberg(text).replace("\r\n", "\n"), 3000)]
    for path in sorted((data / "chinese" / "gutenberg-zh").glob("*.txt")):
        docs += [("zh", c) for c in _chunks(path.read_text(encoding="utf-8").replace("\r\n", "\n"), 1000)]
    for line in (data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl").read_text(encoding="utf-8").splitlines():
        docs.append(("zh", json.loads(line)["text"]))
    truth = json.loads((data / "html_extraction" / "scrapinghub-article-extraction-benchmark" / "ground-truth.json").read_text())
    docs += [("en", item["articleBody"]) for item in truth.values() if len(item["articleBody"]) > 500]
    return docs


def shingle_sets(texts: list[str], n: int = 5) -> list[set]:
    """The exact shingle sets the stage hashes (same tokens, same CJK decision)."""
    return [set(mh.python_shingles(tokens, n)) for tokens in mh.token_strings(texts)]


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def mutate(kind: str, text: str, edit: str, rate: float, rng: np.random.Generator, vocabulary: list[str]) -> str:
    """A variant of ``text``: ``edit`` in sub/ins/del (words, or characters for zh), reorder, boilerplate."""
    if edit == "reorder":
        paragraphs = text.split("\n\n") if text.count("\n\n") >= 2 else text.split("。" if kind == "zh" else ". ")
        rng.shuffle(paragraphs)
        return ("\n\n" if text.count("\n\n") >= 2 else ("。" if kind == "zh" else ". ")).join(paragraphs)
    if edit == "boilerplate":
        block = BOILERPLATE_ZH if kind == "zh" else BOILERPLATE
        return f"{block}\n\n{text}\n\n{block}"
    units = list(text) if kind == "zh" else text.split(" ")
    out = []
    for unit in units:
        hit = rng.random() < rate
        if hit and edit == "del":
            continue
        if hit and edit == "sub":
            unit = vocabulary[rng.integers(len(vocabulary))]
        out.append(unit)
        if hit and edit == "ins":
            out.append(vocabulary[rng.integers(len(vocabulary))])
    return ("" if kind == "zh" else " ").join(out)


EDITS = [("sub", r) for r in (0.005, 0.01, 0.02, 0.05, 0.1)] + [("ins", r) for r in (0.01, 0.03, 0.1)]
EDITS += [("del", r) for r in (0.01, 0.03, 0.1)] + [("reorder", 0.0), ("boilerplate", 0.0)]


def build_corpus(originals: int, variants: int, boiler_negatives: int, seed: int = 0):
    """Rows for the stage, and per family the (id, kind, text) of its members."""
    rng = np.random.default_rng(seed)
    docs = real_documents()
    order = rng.permutation(len(docs))
    en_vocab = sorted({w for k, t in docs[:400] if k == "en" for w in t.split()})
    zh_vocab = sorted({c for k, t in docs if k == "zh" for c in t if "\u4e00" <= c <= "\u9fff"})
    rows, families, meta = [], {}, {}
    for f, index in enumerate(order[:originals]):
        kind, text = docs[index]
        members = [(f"f{f}-orig", "orig", 0.0, text)]
        for v in range(variants):
            edit, rate = EDITS[rng.integers(len(EDITS))]
            variant = mutate(kind, text, edit, rate, rng, zh_vocab if kind == "zh" else en_vocab)
            members.append((f"f{f}-v{v}", edit, rate, variant))
        families[f] = [(doc_id, kind, text) for doc_id, _, _, text in members]
        for doc_id, edit, rate, variant in members:
            rows.append({"id": doc_id, "source": "bench", "text": variant})
            meta[doc_id] = (f, edit, rate)
    for j, index in enumerate(order[originals : originals + boiler_negatives]):
        kind, text = docs[index]
        rows.append({"id": f"neg{j}", "source": "bench", "text": mutate(kind, text, "boilerplate", 0, rng, [])})
        families[f"neg{j}"] = [(f"neg{j}", kind, rows[-1]["text"])]
        meta[f"neg{j}"] = (f"neg{j}", "negative", 0.0)
    order_rows = rng.permutation(len(rows))
    return [rows[i] for i in order_rows], families, meta


def run_stage(rows: list[dict], workdir: Path, workers: int, shards: int = 8, **params) -> tuple[dict, dict]:
    import ray

    from curate.stages.dedup import MinHashDedup

    table = pa.Table.from_pylist(rows)
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(rows)), shards)):
        path = workdir / f"shard{i}.parquet"
        pq.write_table(table.take(pa.array(chunk, pa.int64())), path)
        paths.append(str(path))
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    stage = MinHashDedup.from_config(params)
    summary = stage.run(paths, str(workdir / "dedup"), workers=workers)
    stage.load_decisions(str(workdir / "dedup"))
    out = {}
    for path in paths:
        result = stage.process(pq.read_table(path, columns=["id", "text"]))
        t = result.table
        reasons = pa.array(result.reasons, pa.string()).to_pylist()
        for doc_id, cluster, reason in zip(t["id"].to_pylist(), t["dup_cluster_id"].to_pylist(), reasons):
            out[doc_id] = (cluster, reason)
    return summary, out


def score(families: dict, meta: dict, out: dict) -> dict:
    kind_text = {doc_id: (kind, text) for members in families.values() for doc_id, kind, text in members}
    doc_ids = list(kind_text)
    shingles = dict(zip(doc_ids, shingle_sets([kind_text[d][1] for d in doc_ids])))
    # Recall over every within-family pair whose true Jaccard >= 0.85.
    positives = collapsed = 0
    by_edit: dict[tuple, list] = defaultdict(list)
    for members in families.values():
        ids = [m[0] for m in members]
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                true = jaccard(shingles[ids[i]], shingles[ids[j]])
                together = out[ids[i]][0] == out[ids[j]][0]
                if i == 0:
                    by_edit[meta[ids[j]][1:]].append((true, together))
                if true >= 0.85:
                    positives += 1
                    collapsed += together
    clusters: dict[str, list[str]] = defaultdict(list)
    for doc_id, (cluster, _) in out.items():
        clusters[cluster].append(doc_id)
    removed = [doc_id for doc_id, (_, reason) in out.items() if reason]
    justified = 0
    for doc_id in removed:
        members = [m for m in clusters[out[doc_id][0]] if m != doc_id]
        justified += max(jaccard(shingles[doc_id], shingles[m]) for m in members) >= 0.7
    lost = sum(all(out[m][1] for m in members) for members in clusters.values())
    negatives_removed = sum(1 for doc_id, (_, reason) in out.items() if reason and doc_id.startswith("neg"))
    edits = {
        f"{edit}@{rate}": {
            "pairs": len(v),
            "mean_true_jaccard": round(float(np.mean([t for t, _ in v])), 3),
            "collapsed": round(float(np.mean([c for _, c in v])), 3),
        }
        for (edit, rate), v in sorted(by_edit.items())
    }
    return {
        "recall_pairs_ge_0.85": round(collapsed / max(positives, 1), 4),
        "positive_pairs": positives,
        "removed": len(removed),
        "precision_removed_ge_0.7": round(justified / max(len(removed), 1), 4),
        "clusters_without_a_kept_member": lost,
        "boilerplate_negatives_removed": negatives_removed,
        "by_edit": edits,
    }


def neardup_look(workers: int, params: dict) -> dict:
    """Clough & Stevenson answers vs their sources: which categories dedup clusters (cut/light are text reuse)."""
    base = DATA / "neardup" / "clough-stevenson-plagiarism"
    rows, category = [], {}
    for line in (base / "file_information.csv").read_text().splitlines()[1:]:
        name, task, cat = line.split(",")
        raw = (base / "texts" / name).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252")
        rows.append({"id": name, "source": "clough", "text": text})
        category[name] = (cat, task)
    with tempfile.TemporaryDirectory() as tmp:
        _, out = run_stage(rows, Path(tmp), workers, shards=2, **params)
    sources = {task: out[name][0] for name, (cat, task) in category.items() if cat == "orig"}
    clustered: dict[str, list[int]] = defaultdict(list)
    for name, (cat, task) in category.items():
        if cat != "orig":
            clustered[cat].append(int(out[name][0] == sources[task]))
    return {cat: f"{sum(v)}/{len(v)} clustered with their source" for cat, v in sorted(clustered.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--originals", type=int, default=400)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--negatives", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE", help="a dedup parameter")
    parser.add_argument("--skip-clough", action="store_true")
    args = parser.parse_args()
    params = {key: parse_scalar(value) for key, _, value in (item.partition("=") for item in args.set)}
    rows, families, meta = build_corpus(args.originals, args.variants, args.negatives)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary, out = run_stage(rows, Path(tmp), args.workers, **params)
        seconds = time.perf_counter() - started
    report = {"documents": len(rows), "seconds": round(seconds, 2), "stage": {k: v for k, v in summary.items() if k != "seconds"}}
    report.update(score(families, meta, out))
    print(json.dumps(report, indent=1, ensure_ascii=False))
    if not args.skip_clough:
        print("clough-stevenson (answers vs their source):", neardup_look(args.workers, params))
    ok = report["recall_pairs_ge_0.85"] >= 0.95 and report["precision_removed_ge_0.7"] >= 0.98
    ok = ok and report["clusters_without_a_kept_member"] == 0
    print("GOALS MET" if ok else "GOALS NOT MET")


if __name__ == "__main__":
    main()
