"""Chinese vocabulary extension: base ids and English tokenization unchanged, no dead or digit pieces."""

from __future__ import annotations

import glob
import json
import os

import pytest
import sentencepiece as spm
from click.testing import CliRunner
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from curate.tokenizers.cli import tokenizer as tokenizer_cli
from curate.tokenizers.corpus import input_files
from curate.tokenizers.extend import ExtendParams, choose_pieces, extend_tokenizer, in_scripts, load_proto
from curate.tokenizers.train import TrainParams, train_tokenizer

SPACE = "\u2581"


@pytest.fixture(scope="module")
def base_model(shared_data, tmp_path_factory) -> str:
    """A BPE tokenizer with no Chinese: trained on English books only."""
    output = str(tmp_path_factory.mktemp("base"))
    files = input_files([str(shared_data / "books" / "gutenberg")], "txt", source="books")
    train_tokenizer(files, output, TrainParams(vocab_size=1500, heldout_fraction=0.0))
    return os.path.join(output, "tokenizer.model")


@pytest.fixture(scope="module")
def extended(base_model, shared_data, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("ext"))
    chinese = shared_data / "chinese"
    files = input_files([str(chinese / "gutenberg-zh"), str(chinese / "cmrc2018-wikipedia")], source="zh")
    english = input_files([str(shared_data / "langid" / "lingua" / "sentences" / "en.txt")], source="en")
    report = extend_tokenizer(base_model, files, output, ExtendParams(vocab_size=8000, heldout_fraction=0.05),
                              english_files=english)
    return output, report


def _proto(path: str) -> model_pb2.ModelProto:
    return load_proto(path)


def test_base_ids_unchanged_no_duplicates_scores_below(base_model, extended):
    output, report = extended
    base, merged = _proto(base_model), _proto(os.path.join(output, "tokenizer.model"))
    n = len(base.pieces)
    assert [(p.piece, p.score, p.type) for p in merged.pieces[:n]] == [(p.piece, p.score, p.type) for p in base.pieces]
    pieces = [p.piece for p in merged.pieces]
    assert len(pieces) == len(set(pieces))
    added = merged.pieces[n:]
    assert len(added) == report["added"] > 2000 and report["vocab_size"] == len(merged.pieces)
    assert max(p.score for p in added) < min(p.score for p in base.pieces)
    scores = [p.score for p in added]
    assert scores == sorted(scores, reverse=True)
    for p in added:
        assert in_scripts(p.piece, ["han", "cjk_punct"]), p.piece
        assert not any(ch.isdigit() for ch in p.piece)
        assert SPACE not in p.piece.lstrip(SPACE)


def test_no_dead_piece(extended):
    """Checked independently of the extension code: each added piece alone encodes to itself."""
    output, report = extended
    proto = _proto(os.path.join(output, "tokenizer.model"))
    proto.normalizer_spec.add_dummy_prefix = False
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    first_new = report["base_vocab_size"]
    for i in range(first_new, sp.get_piece_size()):
        assert sp.encode(sp.id_to_piece(i).replace(SPACE, " ")) == [i], sp.id_to_piece(i)
    assert report["dead_after"] == 0


def test_dead_candidates_are_dropped(base_model, extended):
    """A three-character piece with neither two-character prefix nor suffix in the vocabulary can never be
    produced (BPE merges two symbols at a time): it must be dropped, and kept once its prefix is there."""
    output, _ = extended
    base = _proto(base_model)
    chinese = _proto(os.path.join(output, "chinese.model"))
    pieces = {p.piece for p in chinese.pieces}
    chars = [p.piece for p in chinese.pieces if len(p.piece) == 1 and in_scripts(p.piece, ["han"])][:60]
    a, b, c = next((a, b, c) for a in chars for b in chars for c in chars
                   if a + b not in pieces and b + c not in pieces and a + b + c not in pieces)
    lowest = min(p.score for p in chinese.pieces)

    def with_extra(extra: list[str]) -> model_pb2.ModelProto:
        proto = model_pb2.ModelProto()
        proto.CopyFrom(chinese)
        for rank, piece in enumerate(extra):
            proto.pieces.append(model_pb2.ModelProto.SentencePiece(piece=piece, score=lowest - 1 - rank))
        return proto

    merged, info = choose_pieces(base, with_extra([a + b + c]), ["han", "cjk_punct"])
    assert a + b + c in info["dead_dropped_examples"]
    assert a + b + c not in {p.piece for p in merged.pieces}
    merged, info = choose_pieces(base, with_extra([a + b, a + b + c]), ["han", "cjk_punct"])
    assert a + b + c not in info["dead_dropped_examples"]
    assert {a + b, a + b + c} <= {p.piece for p in merged.pieces}


def test_english_identical_chinese_halved(base_model, extended, shared_data):
    output, report = extended
    held = report["heldout"]
    assert held["en"]["lines_identical"] == 1.0 and held["en"]["lines"] >= 400
    assert held["en"]["tokens_per_word_after"] == held["en"]["tokens_per_word_before"]
    assert held["zh"]["reduction"] >= 0.5
    assert held["zh"]["tokens_per_char_after"] <= 0.5 * held["zh"]["tokens_per_char_before"]
    # again on text the extension never saw: UD Chinese sentences, and English books
    base = spm.SentencePieceProcessor(model_file=base_model)
    ext = spm.SentencePieceProcessor(model_file=os.path.join(output, "tokenizer.model"))
    with open(shared_data / "chinese" / "ud-chinese-gsdsimp" / "sentences.jsonl", encoding="utf-8") as f:
        zh = [json.loads(line)["text"] for line in f]
    before = sum(map(len, base.encode(zh)))
    after = sum(map(len, ext.encode(zh)))
    assert after <= 0.5 * before
    english = []
    for path in sorted(glob.glob(str(shared_data / "books" / "gutenberg" / "*.txt")))[:3]:
        with open(path, encoding="latin-1") as f:
            english += [line for line in f.read().splitlines() if line.strip()]
    assert base.encode(english) == ext.encode(english)


def test_digits_punctuation_and_round_trip(extended, shared_data):
    output, _ = extended
    sp = spm.SentencePieceProcessor(model_file=os.path.join(output, "tokenizer.model"))
    ids = sp.encode("2023年5月，我們去了北京。")
    digits = [i for i in ids if any(ch.isdigit() for ch in sp.id_to_piece(i))]
    assert all(sum(ch.isdigit() for ch in sp.id_to_piece(i)) == 1 for i in digits)
    text = "「全角標點」：（括號）！？——《書名》"
    assert sp.decode(sp.encode(text)) == text
    texts = []
    for path in sorted(glob.glob(str(shared_data / "langid" / "lingua" / "sentences" / "*.txt"))):
        with open(path, encoding="utf-8") as f:
            texts += [line for line in f.read().split("\n") if line]
    assert [sp.decode(ids) for ids in sp.encode(texts)] == texts


def test_refuses_unigram_base_and_cli(shared_data, base_model, tmp_path):
    books = str(shared_data / "books" / "gutenberg")
    train_tokenizer(input_files([books], "txt"), str(tmp_path / "uni"),
                    TrainParams(vocab_size=600, model_type="unigram", sample_bytes=300_000, heldout_fraction=0.0))
    chinese = str(shared_data / "chinese" / "cmrc2018-wikipedia")
    runner = CliRunner()
    refused = runner.invoke(tokenizer_cli, ["extend", "--base", str(tmp_path / "uni" / "tokenizer.model"),
                                            "--input", chinese, "--output", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "BPE" in refused.output
    bad_script = runner.invoke(tokenizer_cli, ["extend", "--base", base_model, "--input", chinese,
                                               "--scripts", "klingon", "--output", str(tmp_path / "x")])
    assert bad_script.exit_code == 2 and "scripts" in bad_script.output
    ok = runner.invoke(tokenizer_cli, ["extend", "--base", base_model, "--input", chinese, "--vocab-size", "4000",
                                       "--output", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["added"] > 1000


def _added(base_path: str, model_path: str) -> list[str]:
    base, merged = _proto(base_path), _proto(model_path)
    return [p.piece for p in merged.pieces[len(base.pieces):]]


def test_pieces_are_short_and_their_lengths_reported(base_model, extended):
    """No memorised phrase: every new piece has at most max_piece_chars characters (Chinese-LLaMA: 99.3% <= 4)."""
    output, report = extended
    added = _added(base_model, os.path.join(output, "tokenizer.model"))
    lengths = [len(p.lstrip(SPACE)) for p in added]
    assert max(lengths) <= ExtendParams().max_piece_chars == 4
    histogram = report["added_by_length"]
    assert {int(k): v for k, v in histogram.items()} == {n: lengths.count(n) for n in sorted(set(lengths))}
    assert sum(histogram.values()) == report["added"] and histogram["2"] > histogram.get("4", 0)
    assert report["sample"]["script_chars"] >= report["sample"]["script_chars_needed"] == 8000 * 50


def test_small_sample_refused_with_what_it_needs(base_model, shared_data, tmp_path):
    """Ten Wikipedia paragraphs cannot support 20,000 pieces: refused, saying how much text the size needs."""
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        ten = [next(f) for _ in range(10)]
    sample = tmp_path / "ten.jsonl"
    sample.write_text("".join(ten), encoding="utf-8")
    runner = CliRunner()
    refused = runner.invoke(tokenizer_cli, ["extend", "--base", base_model, "--input", str(sample),
                                            "--output", str(tmp_path / "x")])
    assert refused.exit_code == 1, refused.output
    assert "needs at least 1,000,000" in refused.output and "--min-chars-per-piece 0" in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    # forced: it extends, still with short pieces only
    forced = runner.invoke(tokenizer_cli, ["extend", "--base", base_model, "--input", str(sample),
                                           "--min-chars-per-piece", "0", "--output", str(tmp_path / "forced")])
    assert forced.exit_code == 0, forced.output
    report = json.loads(forced.output)
    added = _added(base_model, str(tmp_path / "forced" / "tokenizer.model"))
    assert added and max(len(p.lstrip(SPACE)) for p in added) <= 4
    assert max(int(k) for k in report["added_by_length"]) <= 4


@pytest.fixture(scope="module")
def curated_mixed(shared_data, tmp_path_factory) -> str:
    """A curated run: Chinese Wikipedia (zh), English book paragraphs (en), code without a language whose
    comments are Chinese made of characters the Wikipedia text never uses."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("curated")
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        zh = [json.loads(line)["text"] for line in f]
    with open(shared_data / "books" / "gutenberg" / "pg11-0.txt", encoding="utf-8-sig") as f:
        en = [p for p in f.read().replace("\r\n", "\n").split("\n\n") if len(p) > 200][:200]
    seen = set("".join(zh))
    rare = [chr(c) for c in range(0x4E00, 0x9FFF) if chr(c) not in seen][:40]
    comment = "".join(rare)
    code = [f"# {comment}\ndef f{i}(x):\n    return x  # {comment}\n" * 20 for i in range(60)]
    texts, langs = zh + en + code, ["zh"] * len(zh) + ["en"] * len(en) + [None] * len(code)
    (root / "docs").mkdir()
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "source": ["web"] * len(texts),
                             "lang": langs, "text": texts}), root / "docs" / "part-0.parquet")
    return str(root), rare


def test_rows_without_language_never_enter_the_sample(base_model, curated_mixed, tmp_path):
    run, rare = curated_mixed
    result = CliRunner().invoke(tokenizer_cli, ["extend", "--base", base_model, "--input", run, "--vocab-size", "4000",
                                                "--output", str(tmp_path / "zh")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["documents_by_lang"]["none"] == 60 and report["documents_by_lang"]["zh"] > 500
    chinese = {p.piece for p in _proto(str(tmp_path / "zh" / "chinese.model")).pieces}
    assert not any(ch in piece for piece in chinese for ch in rare)


def test_language_without_documents_or_pieces_is_an_error(base_model, curated_mixed, tmp_path):
    run, _ = curated_mixed
    runner = CliRunner()
    french = runner.invoke(tokenizer_cli, ["extend", "--base", base_model, "--input", run, "--lang", "fr",
                                           "--output", str(tmp_path / "fr")])
    assert french.exit_code == 1
    assert "no documents with lang 'fr'" in french.output and "zh " in french.output and "none 60" in french.output
    # English documents hold no Han character: nothing could be added, which must not pass as success
    english = runner.invoke(tokenizer_cli, ["extend", "--base", base_model, "--input", run, "--lang", "en",
                                            "--vocab-size", "300", "--min-chars-per-piece", "0",
                                            "--output", str(tmp_path / "en")])
    assert english.exit_code == 1 and "no piece to add" in english.output, english.output
    assert not (tmp_path / "en" / "tokenizer.model").exists()
