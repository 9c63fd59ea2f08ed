"""Tokenizer training: LLaMA-like settings, sampling by source, held-out report, lossless round trip, CLI."""

from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm
from click.testing import CliRunner

from curate.tokenizers.cli import tokenizer as tokenizer_cli
from curate.tokenizers.corpus import input_files
from curate.tokenizers.train import TrainParams, train_tokenizer

SPACE = "\u2581"


@pytest.fixture(scope="module")
def books(shared_data):
    return str(shared_data / "books" / "gutenberg")


@pytest.fixture(scope="module")
def trained(books, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("base"))
    files = input_files([books], "txt", source="books")
    report = train_tokenizer(files, output, TrainParams(vocab_size=1200, heldout_fraction=0.15,
                                                        special_tokens=["<|im_start|>", "<|im_end|>"]))
    return output, report


def langid_sentences(shared_data) -> dict[str, list[str]]:
    out = {}
    for path in sorted(glob.glob(str(shared_data / "langid" / "lingua" / "sentences" / "*.txt"))):
        with open(path, encoding="utf-8") as f:
            out[os.path.basename(path)[:-4]] = [line for line in f.read().split("\n") if line]
    return out


def test_writes_model_vocab_and_report(trained):
    output, report = trained
    sp = spm.SentencePieceProcessor(model_file=os.path.join(output, "tokenizer.model"))
    assert sp.get_piece_size() == 1200 == report["vocab_size"]
    with open(os.path.join(output, "tokenizer.vocab"), encoding="utf-8") as f:
        vocab = [line.split("\t")[0] for line in f.read().splitlines()]
    assert vocab == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    with open(os.path.join(output, "report.json"), encoding="utf-8") as f:
        assert json.load(f)["vocab_size"] == 1200
    (row,) = report["heldout"]
    assert row["source"] == "books" and row["docs"] >= 1
    # a 1200-piece English BPE compresses English well beyond one byte per token
    assert 2.0 < row["bytes_per_token"] < 6.0
    assert sum(report["sampled_bytes_by_source"].values()) > 1_000_000


def test_llama_like_settings(trained):
    output, _ = trained
    sp = spm.SentencePieceProcessor(model_file=os.path.join(output, "tokenizer.model"))
    assert [sp.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, 3)
    # split digits: every digit its own token
    ids = sp.encode("In 2023 there were 1234567 books.")
    digits_per_piece = [sum(ch.isdigit() for ch in sp.id_to_piece(i)) for i in ids if not sp.is_byte(i)]
    byte_pieces = sum(1 for i in ids if sp.is_byte(i))  # rare digits fall back to their byte
    assert max(digits_per_piece) == 1 and sum(digits_per_piece) + byte_pieces == 11
    # user-defined special tokens stay whole
    ids = sp.encode("<|im_start|>user hello<|im_end|>")
    assert sp.piece_to_id("<|im_start|>") in ids and sp.piece_to_id("<|im_end|>") in ids
    # identity normalization: full-width punctuation and ligatures are not rewritten; byte fallback, no <unk>
    text = "全角，標點！ ＡＢＣ ﬁne ①"
    ids = sp.encode(text)
    assert sp.unk_id() not in ids
    assert sp.decode(ids) == text
    assert any(sp.is_byte(i) for i in ids)


def test_lossless_round_trip_75_languages_emoji_control_code(trained, shared_data):
    output, _ = trained
    sp = spm.SentencePieceProcessor(model_file=os.path.join(output, "tokenizer.model"))
    by_lang = langid_sentences(shared_data)
    assert len(by_lang) == 75
    texts = [s for sentences in by_lang.values() for s in sentences]
    texts += [
        "emoji 😀👩‍👩‍👧‍👦🇨🇳 and 🧪",
        "control \x00\x01\x07\x1b[31m red \x7f\u200b\u200d\ufeff end",
        "  leading and trailing spaces   ",
        "tabs\tand\r\nwindows\rlines\n\n\n",
        "\u3000全角空格\u3000",
    ]
    code = os.path.join(os.path.dirname(__file__), "..", "curate")
    for path in sorted(glob.glob(os.path.join(code, "*.py")) + glob.glob(os.path.join(code, "readers", "*.py"))):
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    assert not any(SPACE in t for t in texts)  # U+2581 is SentencePiece's space: see docs/tokenizer.md
    encoded = sp.encode(texts)
    failures = [t for t, ids in zip(texts, encoded) if sp.decode(ids) != t]
    assert failures == []
    assert all(sp.unk_id() not in ids for ids in encoded)


def _curated_run(tmp_path, shared_data) -> str:
    """A curate run directory: docs/*.parquet with id, source, lang, text (English books, Chinese wiki)."""
    docs = tmp_path / "run" / "docs"
    docs.mkdir(parents=True)
    rows = []
    for path in sorted(glob.glob(str(shared_data / "books" / "gutenberg" / "*-0.txt"))):
        with open(path, encoding="utf-8-sig") as f:
            paragraphs = [p for p in f.read().replace("\r\n", "\n").split("\n\n") if p.strip()]
        for i in range(0, len(paragraphs), 20):
            rows.append({"id": f"{os.path.basename(path)}:{i}", "source": "books", "lang": "en",
                         "text": "\n\n".join(paragraphs[i:i + 20])})
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            rows.append({"id": record["id"], "source": "wiki", "lang": "zh", "text": record["text"]})
    table = pa.Table.from_pylist(rows)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), str(docs / "part-00000.parquet"))
    pq.write_table(table.slice(half), str(docs / "part-00001.parquet"))
    return str(tmp_path / "run")


def test_curated_input_weighted_by_source(tmp_path, shared_data):
    run = _curated_run(tmp_path, shared_data)
    files = input_files([run])
    assert {f.format for f in files} == {"curated"} and len(files) == 2
    sample = 600_000
    report = train_tokenizer(files, str(tmp_path / "tok"), TrainParams(
        vocab_size=4000, sample_bytes=sample, heldout_fraction=0.1, source_weights={"books": 3, "wiki": 1}))
    sampled = report["sampled_bytes_by_source"]
    # books get about three quarters of the sample, wiki one quarter (by the byte budget per source)
    assert 0.6 < sampled["books"] / (sampled["books"] + sampled["wiki"]) < 0.85
    assert sampled["books"] + sampled["wiki"] < sample * 1.2
    held = {(r["source"], r["lang"]): r for r in report["heldout"]}
    assert set(held) == {("books", "en"), ("wiki", "zh")}
    # Chinese costs more tokens per byte than English in a mostly-English vocabulary
    assert held["wiki", "zh"]["bytes_per_token"] < held["books", "en"]["bytes_per_token"]

    only_books = train_tokenizer(files, str(tmp_path / "tok2"), TrainParams(
        vocab_size=1000, sample_bytes=sample, source_weights={"books": 1, "wiki": 0}))
    assert set(only_books["sampled_bytes_by_source"]) == {"books"}


def test_unigram_and_same_seed_same_model(books, tmp_path):
    files = input_files([books], "txt", source="books")
    params = TrainParams(vocab_size=800, model_type="unigram", sample_bytes=400_000, heldout_fraction=0.0)
    train_tokenizer(files, str(tmp_path / "a"), params)
    train_tokenizer(files, str(tmp_path / "b"), params)
    a = (tmp_path / "a" / "tokenizer.model").read_bytes()
    assert a == (tmp_path / "b" / "tokenizer.model").read_bytes()
    sp = spm.SentencePieceProcessor(model_proto=a)
    assert sp.decode(sp.encode("It is a truth universally acknowledged.")) == "It is a truth universally acknowledged."


def test_cli_exit_codes(books, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(tokenizer_cli, ["train", "--input", books, "--format", "txt", "--vocab-size", "600",
                                       "--sample-mb", "0.5", "--output", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["vocab_size"] == 600
    usage = runner.invoke(tokenizer_cli, ["train", "--input", books, "--vocab-size", "10", "--output", str(tmp_path)])
    assert usage.exit_code == 2 and "vocab_size" in usage.output
    usage = runner.invoke(tokenizer_cli, ["train", "--input", books, "--source-weight", "books", "--output", str(tmp_path)])
    assert usage.exit_code == 2
    missing = runner.invoke(tokenizer_cli, ["train", "--input", str(tmp_path / "nope"), "--output", str(tmp_path)])
    assert missing.exit_code == 2 and "no such file" in missing.output
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    failed = runner.invoke(tokenizer_cli, ["train", "--input", str(empty), "--output", str(tmp_path / "e")])
    assert failed.exit_code == 1 and "no training text" in failed.output


def test_run_output_without_documents_says_so(tmp_path):
    """A run that kept nothing has stats and rejects but no docs: they are never read as text."""
    run = tmp_path / "run"
    for folder in ("docs", "stats", "rejects"):
        (run / folder).mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    pq.write_table(pa.table({"task_id": ["t"], "docs_in": [2], "docs_out": [0]}), str(run / "stats" / "t.parquet"))
    pq.write_table(pa.table({"id": ["a"], "text": ["rejected text " * 50], "reject_reason": ["length:too-short"]}),
                   str(run / "rejects" / "t.length.parquet"))
    result = CliRunner().invoke(tokenizer_cli, ["train", "--input", str(run), "--vocab-size", "300",
                                                "--output", str(tmp_path / "tok")])
    assert result.exit_code == 1
    assert "no documents" in result.output and "stats" not in result.output.split("(")[0]
    assert not (tmp_path / "tok" / "tokenizer.model").exists()
    docs_only = CliRunner().invoke(tokenizer_cli, ["train", "--input", str(run / "docs"), "--output", str(tmp_path / "t")])
    assert docs_only.exit_code == 1 and "no documents" in docs_only.output


def test_an_input_read_error_is_one_line(tmp_path):
    """A file that fails while SentencePiece reads the sample: its own error, not the trainer's trace."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"text": "some text " * 40}) + "\n")
    (folder / "b.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    result = CliRunner().invoke(tokenizer_cli, ["train", "--input", str(folder), "--vocab-size", "300",
                                                "--output", str(tmp_path / "tok")])
    assert result.exit_code == 1
    assert "b.parquet" in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("command", ["train", "extend", "export-hf", "tokenize"])
def test_every_option_has_help_and_shows_its_default(command):
    import click

    from curate.tokenizers.cli import tokenize_command

    group = click.Group(commands={"tokenize": tokenize_command, **tokenizer_cli.commands})
    cmd = group.commands[command]
    text = CliRunner().invoke(group, [command, "--help"], terminal_width=200).output
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.help, f"{command} {param.opts[0]}: no help text"
        if not (param.required or param.multiple or param.default is None):
            assert param.show_default, f"{command} {param.opts[0]}: default not shown"
            line = next(line for line in text.splitlines() if line.lstrip().split(" ")[0] == param.opts[0])
            block = text[text.index(line):].split("\n  -")[0]
            assert "[default: " in block, f"{command} {param.opts[0]}"


def test_cli_defaults_are_the_library_defaults():
    from curate.tokenizers.extend import ExtendParams

    expected = {"train": TrainParams(), "extend": ExtendParams()}
    for command, params in expected.items():
        for param in tokenizer_cli.commands[command].params:
            name = param.name.replace("sample_mb", "sample_bytes")
            if name in ("byte_fallback", "split_digits", "vocab_size", "heldout_fraction", "character_coverage",
                        "threads", "seed", "pad_id", "lang", "max_piece_chars", "min_chars_per_piece", "model_type",
                        "normalization"):
                assert param.default == getattr(params, name), (command, name)
            elif name == "sample_bytes":
                assert param.default * (1 << 20) == params.sample_bytes
