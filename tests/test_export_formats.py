"""Token folders exported for Megatron-LM and nanoGPT, read back token by token and boundary by boundary.

The Megatron reader below is written from the format's description (Megatron-LM's
``megatron/core/datasets/indexed_dataset.py``), not from our writer: if either
misreads the layout, the comparison with SentencePiece's own ids fails.
"""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
from click.testing import CliRunner

from curate.tests.corpora import book_paragraphs, chinese_paragraphs, train_book_tokenizer
from curate.tokenizers.cli import tokenizer as tokenizer_group
from curate.tokenizers.corpus import input_files
from curate.tokenizers.export_formats import (MegatronParams, NanoGPTParams, TokenFolderError, export_megatron,
                                              export_nanogpt)
from curate.tokenizers.extend import append_pieces, load_proto
from curate.tokenizers.tokenize import TokenizeParams, task_name, tokenize_task, write_meta

NUMPY_OF_CODE = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32,
                 8: np.uint16}


def read_megatron(prefix: str) -> tuple[dict, list[np.ndarray], np.ndarray]:
    """(header, one token array per sequence, document indices), read the way Megatron's IndexedDataset reads."""
    with open(prefix + ".idx", "rb") as f:
        raw = f.read()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    version, = struct.unpack_from("<Q", raw, 9)
    code, = struct.unpack_from("<B", raw, 17)
    sequences, documents = struct.unpack_from("<QQ", raw, 18)
    at = 34
    lengths = np.frombuffer(raw, dtype="<i4", count=sequences, offset=at)
    at += lengths.nbytes
    pointers = np.frombuffer(raw, dtype="<i8", count=sequences, offset=at)
    at += pointers.nbytes
    doc_index = np.frombuffer(raw, dtype="<i8", count=documents, offset=at)
    at += doc_index.nbytes
    assert at == len(raw), "bytes left over after the document indices"
    dtype = np.dtype(NUMPY_OF_CODE[code])
    data = np.fromfile(prefix + ".bin", dtype=np.uint8)
    sequences_read = [np.frombuffer(data, dtype=dtype, count=int(n), offset=int(p)) for n, p in zip(lengths, pointers)]
    header = {"version": version, "code": code, "sequences": sequences, "documents": documents,
              "bin_bytes": data.size, "itemsize": dtype.itemsize}
    return header, sequences_read, doc_index


def _rows() -> list[dict]:
    from curate.tests.conftest import SHARED_DATA

    # distinct texts: a document is found in train.bin or val.bin by its tokens
    books = list(dict.fromkeys(book_paragraphs(SHARED_DATA)))[:400]
    chinese = list(dict.fromkeys(chinese_paragraphs(SHARED_DATA)))[:300]
    rows = [{"id": f"b{i}", "source": "books", "lang": "en", "text": t} for i, t in enumerate(books)]
    rows += [{"id": f"z{i}", "source": "wiki zh", "lang": "zh", "text": t} for i, t in enumerate(chinese)]
    rows.append({"id": "empty", "source": "books", "lang": "en", "text": ""})
    return rows


def _tokenize(model_path: str, rows: list[dict], root, shards: int = 3) -> str:
    """A token folder made by `curate tokenize`'s own task function (one task per curated shard, no Ray)."""
    docs = root / "run" / "docs"
    docs.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    per = -(-table.num_rows // shards)
    for k in range(shards):
        pq.write_table(table.slice(k * per, per), str(docs / f"part-{k}.parquet"))
    output = str(root / "tokens")
    with open(model_path, "rb") as f:
        model = f.read()
    meta = write_meta(output, model, model_path)
    for folder in ("stats", "done"):
        os.makedirs(os.path.join(output, folder), exist_ok=True)
    for item in input_files([str(root / "run")]):
        tokenize_task(item, task_name(item), model, output, TokenizeParams(), meta)
    return output


@pytest.fixture(scope="module")
def model_path(shared_data, tmp_path_factory) -> str:
    return train_book_tokenizer(shared_data, str(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def corpus(model_path, tmp_path_factory):
    rows = _rows()
    return rows, _tokenize(model_path, rows, tmp_path_factory.mktemp("corpus"))


def _expected(model_path: str, rows: list[dict]) -> dict[str, list[int]]:
    sp = spm.SentencePieceProcessor(model_file=model_path)
    return {row["id"]: sp.encode(row["text"]) + [sp.eos_id()] for row in rows}


def _order(tokens_dir: str, source: str) -> list[str]:
    """Document ids of a source in shard order (task name), then .bin order."""
    stats = pq.read_table(os.path.join(tokens_dir, "stats")).to_pylist()
    shards = sorted({r["shard"] for r in stats if r["source"] == source})
    return [i for s in shards
            for i in pq.read_table(os.path.join(tokens_dir, s[:-4] + ".docs.parquet"))["id"].to_pylist()]


def test_megatron_every_token_and_boundary(model_path, corpus, tmp_path):
    rows, tokens_dir = corpus
    expected = _expected(model_path, rows)
    out = tmp_path / "megatron"
    result = CliRunner().invoke(tokenizer_group, ["export-megatron", tokens_dir, "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dtype"] == "uint16" and report["dtype_code"] == 8
    assert sorted(os.listdir(out)) == ["books_text_document.bin", "books_text_document.idx",
                                       "wiki_zh-" + report["datasets"]["wiki zh"]["prefix"].split("wiki_zh-")[1]
                                       .split("_text")[0] + "_text_document.bin",
                                       "wiki_zh-" + report["datasets"]["wiki zh"]["prefix"].split("wiki_zh-")[1]
                                       .split("_text")[0] + "_text_document.idx"]
    for source in ("books", "wiki zh"):
        prefix = report["datasets"][source]["prefix"]
        header, sequences, doc_index = read_megatron(prefix)
        ids = _order(tokens_dir, source)
        n = sum(1 for r in rows if r["source"] == source)
        assert len(ids) == n
        assert header == {"version": 1, "code": 8, "sequences": n, "documents": n + 1,
                          "bin_bytes": 2 * sum(len(expected[i]) for i in ids), "itemsize": 2}
        assert doc_index.tolist() == list(range(n + 1))  # one sequence per document
        for doc, sequence in zip(ids, sequences):
            assert sequence.tolist() == expected[doc]
        assert report["datasets"][source]["documents_ending_with_eos"] == n
    weights = report["data_path"].split()[0::2]
    assert abs(sum(float(w) for w in weights) - 1) < 1e-5
    assert report["data_path"].split()[1::2] == [report["datasets"][s]["prefix"] for s in ("books", "wiki zh")]


def test_megatron_merged_int32(model_path, corpus, tmp_path):
    rows, tokens_dir = corpus
    expected = _expected(model_path, rows)
    params = MegatronParams(dtype="int32", merge=True)
    report = export_megatron(tokens_dir, str(tmp_path / "m"), params)
    header, sequences, doc_index = read_megatron(str(tmp_path / "m" / "text_document"))
    ids = _order(tokens_dir, "books") + _order(tokens_dir, "wiki zh")
    assert header["code"] == 4 and header["itemsize"] == 4 and header["sequences"] == len(rows)
    assert [s.tolist() for s in sequences] == [expected[i] for i in ids]
    assert doc_index[-1] == len(rows) and report["datasets"]["all"]["tokens"] == sum(map(len, expected.values()))


def test_megatron_reads_them_itself(model_path, corpus, tmp_path):
    """Megatron-core's own IndexedDataset, where it is installed (it is not a dependency of curate)."""
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    rows, tokens_dir = corpus
    expected = _expected(model_path, rows)
    report = export_megatron(tokens_dir, str(tmp_path / "m"), MegatronParams())
    prefix = report["datasets"]["books"]["prefix"]
    dataset = indexed.IndexedDataset(prefix)
    ids = _order(tokens_dir, "books")
    assert len(dataset) == len(ids)
    assert [dataset[i].tolist() for i in range(len(dataset))] == [expected[i] for i in ids]
    assert dataset.document_indices.tolist() == list(range(len(ids) + 1))


def test_nanogpt_split_by_document(model_path, corpus, tmp_path):
    rows, tokens_dir = corpus
    expected = _expected(model_path, rows)
    out = tmp_path / "nano"
    result = CliRunner().invoke(tokenizer_group, ["export-nanogpt", tokens_dir, "--output", str(out),
                                                  "--val-fraction", "0.05"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # what nanoGPT's train.py does: memmap uint16, vocab_size from meta.pkl
    train = np.memmap(out / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(out / "val.bin", dtype=np.uint16, mode="r")
    with open(out / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    assert meta["vocab_size"] == 4000 and meta["eos_id"] == 2
    # cut both files at the EOS ids: each document exactly once, whole, on one side
    def documents(flat):
        ends = np.flatnonzero(flat == 2)
        assert len(flat) == 0 or ends[-1] == len(flat) - 1
        return [flat[a:b + 1].tolist() for a, b in zip(np.r_[0, ends[:-1] + 1], ends)]

    train_docs, val_docs = documents(np.asarray(train)), documents(np.asarray(val))
    ids = _order(tokens_dir, "books") + _order(tokens_dir, "wiki zh")
    val_ids = [i for i in ids if expected[i] in val_docs]
    assert sorted(train_docs + val_docs) == sorted(expected[i] for i in ids)
    assert train_docs == [expected[i] for i in ids if i not in val_ids]
    assert 0.02 * len(ids) < len(val_ids) < 0.1 * len(ids)
    assert report["val"]["documents"] == len(val_docs) and report["train"]["documents"] == len(train_docs)
    assert report["train"]["tokens"] == len(train) and report["val"]["tokens"] == len(val)
    # the split depends on the ids only: a rerun writes the same bytes
    again = export_nanogpt(tokens_dir, str(tmp_path / "again"), NanoGPTParams(val_fraction=0.05))
    assert again["val"] == report["val"]
    for name in ("train.bin", "val.bin"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_small_corpus_still_has_val_and_train(model_path, tmp_path):
    rows = [{"id": "a", "source": "s", "lang": "en", "text": "one small document"},
            {"id": "b", "source": "s", "lang": "en", "text": "and another one"}]
    tokens_dir = _tokenize(model_path, rows, tmp_path, shards=1)
    for fraction in (0.001, 0.999):
        report = export_nanogpt(tokens_dir, str(tmp_path / f"n{fraction}"), NanoGPTParams(val_fraction=fraction))
        assert report["train"]["documents"] == 1 and report["val"]["documents"] == 1


def test_vocabulary_over_uint16(model_path, tmp_path):
    """70,000 pieces: Megatron gets int32 (it has no uint32), nanoGPT's uint16 is refused with exit code 2."""
    base = load_proto(model_path)
    rare = [chr(c) for c in range(0x20000, 0x20000 + 70_000 - len(base.pieces))]
    big_path = str(tmp_path / "big.model")
    with open(big_path, "wb") as f:
        f.write(append_pieces(base, rare).SerializeToString())
    rows = [{"id": "r", "source": "s", "lang": "zh", "text": "rare " + "".join(rare[-5:]) + " end"},
            {"id": "c", "source": "s", "lang": "en", "text": "common words"}]
    tokens_dir = _tokenize(big_path, rows, tmp_path, shards=1)
    expected = _expected(big_path, rows)
    assert max(expected["r"]) > 65535
    report = export_megatron(tokens_dir, str(tmp_path / "m"), MegatronParams())
    header, sequences, _ = read_megatron(report["datasets"]["s"]["prefix"])
    assert header["code"] == 4 and [s.tolist() for s in sequences] == [expected[i] for i in _order(tokens_dir, "s")]
    runner = CliRunner()
    refused = runner.invoke(tokenizer_group, ["export-nanogpt", tokens_dir, "--output", str(tmp_path / "n")])
    assert refused.exit_code == 2 and "vocab_size 70000 does not fit uint16" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "n" / "train.bin").exists()
    refused = runner.invoke(tokenizer_group, ["export-megatron", tokens_dir, "--output", str(tmp_path / "m2"),
                                              "--dtype", "uint16"])
    assert refused.exit_code == 2 and "does not fit uint16" in refused.output
    wide = export_nanogpt(tokens_dir, str(tmp_path / "n32"), NanoGPTParams(dtype="uint32", val_fraction=0.5))
    flat = np.fromfile(tmp_path / "n32" / "train.bin", dtype=np.uint32).tolist() + \
        np.fromfile(tmp_path / "n32" / "val.bin", dtype=np.uint32).tolist()
    assert wide["dtype"] == "uint32" and sorted(flat) == sorted(expected["r"] + expected["c"])


def test_bad_inputs(corpus, tmp_path):
    _, tokens_dir = corpus
    runner = CliRunner()
    not_tokens = tmp_path / "docs"
    not_tokens.mkdir()
    (not_tokens / "x.parquet").write_bytes(b"PAR1")
    for folder in (str(not_tokens), str(tmp_path / "absent")):
        for command in ("export-megatron", "export-nanogpt"):
            result = runner.invoke(tokenizer_group, [command, folder, "--output", str(tmp_path / "o")])
            assert result.exit_code == 2, result.output
            assert folder in result.output and "Traceback" not in result.output
            assert len(result.output.strip().splitlines()) == 1
    unknown = runner.invoke(tokenizer_group, ["export-megatron", tokens_dir, "--output", str(tmp_path / "o"),
                                              "--source", "nope"])
    assert unknown.exit_code == 2 and "no source 'nope'" in unknown.output
    zero = runner.invoke(tokenizer_group, ["export-nanogpt", tokens_dir, "--output", str(tmp_path / "o"),
                                           "--val-fraction", "0"])
    assert zero.exit_code == 2 and "val_fraction" in zero.output
    with pytest.raises(TokenFolderError, match="no committed task"):
        empty = tmp_path / "empty"
        (empty / "done").mkdir(parents=True)
        (empty / "stats").mkdir()
        (empty / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": 10}))
        export_megatron(str(empty), str(tmp_path / "o"), MegatronParams())


def test_damaged_shard_fails_with_exit_1(model_path, tmp_path):
    rows = [{"id": str(i), "source": "s", "lang": "en", "text": f"document number {i}"} for i in range(5)]
    tokens_dir = _tokenize(model_path, rows, tmp_path, shards=1)
    (shard,) = [os.path.join(r, f) for r, _, fs in os.walk(tokens_dir) for f in fs if f.endswith(".bin")]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 2)
    result = CliRunner().invoke(tokenizer_group, ["export-megatron", tokens_dir, "--output", str(tmp_path / "m")])
    assert result.exit_code == 1 and "damaged" in result.output and "Traceback" not in result.output
