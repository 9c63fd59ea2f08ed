"""`curate mix` on real text: a curated run with a real signal column, a SentencePiece tokenizer trained on
it, token shards written by `curate tokenize`'s own task; selections by language and signal, samples that
decode back to the documents, and the demo's mixture step.

The text is the demo's own (pages, the standard-library book, click's source): nothing from ../shared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
from rich.console import Console

from curate.demo_data import CLICK_FILES, demo_pages, docstring_book
from curate.mixtures import MixtureDataset
from curate.mixtures.build import build_mixture
from curate.mixtures.config import from_dict
from curate.mixtures.demo import DEMO_MIXTURE, mixture_step
from curate.schema import doc_id
from curate.stages.length import Length
from curate.tokenizers.corpus import input_files
from curate.tokenizers.tokenize import TokenizeParams, task_name, tokenize_task, write_meta
from curate.tokenizers.train import TrainParams, train_tokenizer


def _documents() -> list[dict]:
    rows = []
    for page in demo_pages():
        if page.kind != "article" or page.lang not in ("en", "zh"):
            continue
        for i, paragraph in enumerate(page.paragraphs):
            rows.append({"source": "web", "lang": page.lang, "text": paragraph, "url": f"{page.url}#{i}"})
    book = docstring_book()
    for i in range(0, len(book), 12_000):
        rows.append({"source": "books", "lang": "en", "text": book[i:i + 12_000], "url": f"book#{i}"})
    import click

    for name in CLICK_FILES:
        with open(os.path.join(os.path.dirname(click.__file__), name), encoding="utf-8") as f:
            rows.append({"source": "code", "lang": None, "text": f.read(), "url": f"click/{name}"})
    for row in rows:
        row["id"] = doc_id(row["source"], row["url"])
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """DIR/out (a curated run with `char_count` from the real length stage), DIR/tokenizer, DIR/tokens."""
    root = tmp_path_factory.mktemp("real")
    table = pa.Table.from_pylist(_documents())
    table = Length(Length.Params()).process(table).table
    (root / "out" / "docs").mkdir(parents=True)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), root / "out" / "docs" / "part-0.parquet")
    pq.write_table(table.slice(half), root / "out" / "docs" / "part-1.parquet")
    files = input_files([str(root / "out")], "curated")
    train_tokenizer(files, str(root / "tokenizer"), TrainParams(vocab_size=1200, heldout_fraction=0.0))
    model_path = str(root / "tokenizer" / "tokenizer.model")
    with open(model_path, "rb") as f:
        model = f.read()
    for name, params in (("tokens", TokenizeParams()), ("tokens-noeos", TokenizeParams(eos=False))):
        output = str(root / name)
        meta = write_meta(output, model, model_path)
        for folder in ("stats", "done"):
            os.makedirs(os.path.join(output, folder), exist_ok=True)
        for item in files:  # tokenize's own task, run in this process instead of on Ray
            tokenize_task(item, task_name(item), model, output, params, meta)
    return root


def _curated(corpus: Path) -> pa.Table:
    return pq.read_table(sorted((corpus / "out" / "docs").glob("*.parquet")))


def _selected(mix: Path, c: int, split: str | None = None) -> list[str]:
    docs = pq.read_table(mix / "documents" / f"c{c}.parquet")
    if split:
        docs = docs.filter(pc.equal(docs["split"], split))
    return docs["id"].to_pylist()


def test_selection_by_language_and_signal_quantiles(corpus, tmp_path):
    config = {"tokens": "20K", "seq_len": 64, "paths": [str(corpus / "tokens")], "curated": [str(corpus / "out")],
              "validation": 0.1, "max_epochs": 50,
              "components": [
                  {"name": "en-short", "source": "web", "lang": "en", "weight": 0.3,
                   "where": {"char_count": {"quantile": [0, 1 / 3]}}},
                  {"name": "en-middle", "source": "web", "lang": "en", "weight": 0.2,
                   "where": {"char_count": {"quantile": [1 / 3, 2 / 3]}}},
                  {"name": "en-long", "source": "web", "lang": "en", "weight": 0.2,
                   "where": {"char_count": {"quantile": [2 / 3, 1]}}},
                  {"name": "zh", "source": "web", "lang": "zh", "weight": 0.2},
                  {"name": "code-big", "source": "code", "weight": 0.1, "where": {"char_count": {"min": 10_000}}}]}
    meta = build_mixture(from_dict(config, file="mixture.yaml"), str(tmp_path / "mix"))
    curated = _curated(corpus).to_pylist()
    en = {r["id"]: r["char_count"] for r in curated if r["source"] == "web" and r["lang"] == "en"}
    values = np.sort(np.array(list(en.values())))
    thirds = [set(_selected(tmp_path / "mix", c)) for c in range(3)]
    assert not (thirds[0] & thirds[1]) and not (thirds[1] & thirds[2]) and not (thirds[0] & thirds[2])
    assert thirds[0] | thirds[1] | thirds[2] == set(en)  # the three buckets cover the language, ties included
    for doc, chars in en.items():
        rank = np.searchsorted(values, chars, side="left") / len(values)
        bucket = 0 if rank < 1 / 3 else 1 if rank < 2 / 3 else 2
        assert doc in thirds[bucket]
    assert max(en[d] for d in thirds[0]) <= min(en[d] for d in thirds[2])
    zh = {r["id"] for r in curated if r["source"] == "web" and r["lang"] == "zh"}
    assert set(_selected(tmp_path / "mix", 3)) == zh
    assert set(_selected(tmp_path / "mix", 4)) == {r["id"] for r in curated
                                                   if r["source"] == "code" and r["char_count"] >= 10_000}
    assert 0 < meta["components"][4]["documents"] + meta["components"][4]["val_documents"] < len(CLICK_FILES)
    # the curated run is an input: its files are in the fingerprint
    assert any(e["path"].endswith("part-1.parquet") for e in meta["inputs"])


def test_samples_decode_back_to_the_documents(corpus, tmp_path):
    config = {"tokens": "60K", "seq_len": 512, "paths": [str(corpus / "tokens")], "validation": 0.05,
              "components": [{"source": "web", "weight": 0.5}, {"source": "books", "weight": 0.3},
                             {"source": "code", "weight": 0.2}]}
    build_mixture(from_dict(config, file="mixture.yaml"), str(tmp_path / "mix"))
    ds = MixtureDataset(tmp_path / "mix")
    sp = spm.SentencePieceProcessor(model_file=str(corpus / "tokenizer" / "tokenizer.model"))
    assert ds.eos_id == sp.eos_id() and ds.vocab_size == sp.get_piece_size()
    texts = {r["id"]: r["text"] for r in _curated(corpus).to_pylist()}
    by_component = {c: {texts[i] for i in _selected(tmp_path / "mix", c, "train")} for c in range(3)}
    val_texts = {texts[i] for c in range(3) for i in _selected(tmp_path / "mix", c, "val")}
    whole = 0
    for i in range(0, len(ds), 3):
        sample = ds[i].tolist()
        c = ds.components.index(ds.component_of(i))
        cuts = [j for j, t in enumerate(sample) if t == ds.eos_id]
        for a, b in zip(cuts, cuts[1:]):  # a document that lies whole inside the sample
            text = sp.decode(sample[a + 1:b])
            assert text in by_component[c] and text not in val_texts
            whole += 1
        for piece in (sample[:cuts[0]] if cuts else sample, sample[cuts[-1] + 1:] if cuts else []):
            if len(piece) > 8:  # a cut-off document: its text is a part of one of the component's documents
                assert any(sp.decode(piece[1:-1]) in t for t in by_component[c])
    assert whole > 20


def test_shards_without_eos_are_packed_with_eos(corpus, tmp_path):
    results = []
    for name in ("tokens", "tokens-noeos"):
        config = {"tokens": "10K", "seq_len": 64, "seed": 3, "validation": 0, "paths": [str(corpus / name)],
                  "components": [{"source": "web", "weight": 1}]}
        build_mixture(from_dict(config, file="mixture.yaml"), str(tmp_path / name))
        ds = MixtureDataset(tmp_path / name)
        results.append(ds.batch(range(len(ds))))
        docs = np.load(tmp_path / name / "docs" / "c0.npy")
        assert (docs[:, 2] - docs[:, 3] == (0 if name == "tokens" else 1)).all()
    assert np.array_equal(results[0], results[1])


def test_the_demo_mixture_step(corpus, capsys):
    # the demo's own mixture file over these folders (same source names: web, books, code)
    assert mixture_step(str(corpus), Console(width=200)) == 0
    printed = " ".join(capsys.readouterr().out.split())
    for expected in ("web-en", "web-zh", "books", "code-longer-half", "epochs elapsed", "training samples"):
        assert expected in printed
    meta = json.loads((corpus / "mix" / "mixture.json").read_text())
    assert meta["tokens"] == 100_000 and (corpus / "mixture.yaml").read_text() == DEMO_MIXTURE
    assert sum(c["train_samples"] for c in meta["components"]) == len(MixtureDataset(corpus / "mix"))
    # rerunning the step reuses the index (same fingerprint)
    before = (corpus / "mix" / "train" / "index.npy").stat().st_mtime_ns
    assert mixture_step(str(corpus), Console(width=200)) == 0
    assert (corpus / "mix" / "train" / "index.npy").stat().st_mtime_ns == before
