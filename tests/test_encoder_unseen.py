"""The encoder's shortcuts on text it has never seen (#16): rank BPE and the segment cache.

Exactness is what matters: with either shortcut (rank BPE: SentencePiece's merges run by
tiktoken's core; the segment cache, with segments cut at line breaks too) the ids must be
SentencePiece's own, on the first pass over a text as on later ones, and each shortcut must switch
itself off for a model where it would not be exact.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from curate.tokenizers.corpus import input_files
from curate.tokenizers import encoder as encoder_module
from curate.tokenizers.encoder import MAX_MEAN_SEGMENT_CHARS, Encoder
from curate.tokenizers.extend import append_pieces
from curate.tokenizers.train import TrainParams, train_tokenizer
from sentencepiece import sentencepiece_model_pb2 as model_pb2


def trained(shared_data, output: str, **params) -> bytes:
    files = input_files([str(shared_data / "books" / "gutenberg"), str(shared_data / "chinese" / "gutenberg-zh")], "txt")
    train_tokenizer(files, output, TrainParams(vocab_size=4000, sample_bytes=1_000_000, heldout_fraction=0.0, **params))
    with open(os.path.join(output, "tokenizer.model"), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def model(shared_data, tmp_path_factory) -> bytes:
    return trained(shared_data, str(tmp_path_factory.mktemp("tok-unseen")))


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    """Hard-wrapped books (line ends inside paragraphs), Chinese passages, web sentences, edge cases."""
    out = []
    for path in sorted(glob.glob(str(shared_data / "books" / "gutenberg" / "*.txt")))[:3]:
        raw = open(path, "rb").read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        paragraphs = text.split("\n\n") if "\r\n" not in text else text.split("\r\n\r\n")
        out += ["\n\n".join(paragraphs[i:i + 20]) for i in range(0, min(len(paragraphs), 400), 20)]
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        out += [json.loads(line)["text"] for line in list(f)[:60]]
    with open(shared_data / "langid" / "lingua" / "sentences" / "de.txt", encoding="utf-8") as f:
        lines = f.read().split("\n")[:120]
    out += ["\n".join(lines[i:i + 6]) for i in range(0, 120, 6)]
    out += [
        "\nleading newline", "trailing newline\n", "\n\n\n", "a\n b\n\n  c \n", "line\r\nwindows\r\n",
        "nul\x00inside a word", "\x00", "word\n\u2581marks\n", "x" * 3000 + "\ny",
        "one two three", "", " ", "single\nspaced words\nwith line ends",
    ]
    return out


def batches(items: list[str], size: int = 16) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def check_exact(encoder: Encoder, texts: list[str]) -> None:
    expected = encoder.sp.encode(texts)
    first = [ids for batch in batches(texts) for ids in encoder.encode(batch)]  # cold: new segments each batch
    assert first == expected
    assert encoder.encode(texts) == expected  # warm


def test_unseen_text_encodes_exactly(model, texts):
    encoder = Encoder(model, rank_bpe=False)
    assert encoder.cached and encoder.newline_split and encoder.rank_bpe is None
    check_exact(encoder, texts)


def test_shortcuts_step_aside_where_they_would_not_be_exact(model, texts, shared_data, tmp_path):
    """A piece holding a newline stops the line cuts, and so does a model without byte fallback."""
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model)
    with_newline = append_pieces(proto, ["d\nT", "\n\n"])
    encoder = Encoder(with_newline.SerializeToString(), rank_bpe=False)
    assert encoder.cached and not encoder.newline_split
    check_exact(encoder, texts + ["and\nThe end\n\nThe"])

    encoder = Encoder(trained(shared_data, str(tmp_path), byte_fallback=False))
    assert encoder.cached and not encoder.newline_split
    assert encoder.rank_bpe is None and encoder.rank_bpe_off == "no byte fallback"
    check_exact(encoder, texts)


@pytest.fixture(scope="module")
def unseen(shared_data, texts) -> list[str]:
    """Real text the model was not trained on, in many scripts: news articles, the 75 languages of
    Lingua's sentences (characters outside the vocabulary: byte fallback), Chinese Wikipedia, UD
    Chinese, plus the edge cases above."""
    out = list(texts)
    with open(shared_data / "html_extraction" / "scrapinghub-article-extraction-benchmark" / "ground-truth.json",
              encoding="utf-8") as f:
        out += [page["articleBody"] for page in json.load(f).values() if page.get("articleBody")][:40]
    for path in sorted(glob.glob(str(shared_data / "langid" / "lingua" / "sentences" / "*.txt"))):
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")[:40]
        out += [" ".join(lines[i:i + 8]) for i in range(0, len(lines), 8)]
    with open(shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl", encoding="utf-8") as f:
        out += [json.loads(line)["text"] for line in list(f)[60:160]]
    # UD Chinese with its gold word segmentation, words between spaces: Chinese characters through rank BPE
    # (unsegmented Chinese has too few spaces and goes to SentencePiece whole)
    with open(shared_data / "chinese" / "ud-chinese-gsdsimp" / "zh_gsdsimp-ud-dev.conllu", encoding="utf-8") as f:
        sentences = [" ".join(line.split("\t")[1] for line in block.split("\n") if line.split("\t")[0].isdigit())
                     for block in f.read().split("\n\n")[:200]]
    segmented = [" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5)]
    assert all(len(text) <= MAX_MEAN_SEGMENT_CHARS * (text.count(" ") + 1) for text in segmented)
    out += segmented
    out += ["emoji 😀🙈 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ǅ ﬁ", "\u2581\u2581 x \u2581", "tab\tseparated\tvalues\n", "  two  spaces  ",
            "中文 mixed 混合 text 文本", "ḁ̴̢̛̛ combining marks ē̄"]
    # texts that hold the markers a batch's texts are joined with, or a NUL: such a batch must go text by
    # text and still come out as SentencePiece's ids (a lone surrogate cannot reach here: Parquet text is UTF-8)
    out += [f"before {encoder_module.TEXT_END} after", f"x{encoder_module.WHOLE_TEXT}y", encoder_module.TEXT_END,
            "a NUL \x00 in a sentence"]
    return out


def test_rank_bpe_equals_sentencepiece_on_unseen_text(model, unseen, monkeypatch):
    pytest.importorskip("tiktoken")
    encoder = Encoder(model)
    assert encoder.rank_bpe is not None, encoder.rank_bpe_off
    check_exact(encoder, unseen)
    monkeypatch.setattr(encoder_module, "RANKS_FLUSH", 50)  # several tiktoken calls per batch
    check_exact(encoder, unseen)
    monkeypatch.undo()
    # the flat form a worker writes (EOS after each text) equals the segment cache's, and so do the lengths
    cache = Encoder(model, rank_bpe=False)
    for batch in batches(unseen, 100):
        flat, lengths = encoder.encode_flat(batch, 2)
        want_flat, want_lengths = cache.encode_flat(batch, 2)
        assert flat.tolist() == want_flat.tolist() and lengths.tolist() == want_lengths.tolist()
        flat, lengths = encoder.encode_flat(batch, -1)
        assert flat.tolist() == [i for ids in encoder.sp.encode(batch) for i in ids]
    # characters outside the vocabulary went through byte fallback, some of them through a leading-bytes rank
    ids = [i for ids in encoder.encode(unseen) for i in ids]
    assert any(encoder.proto.pieces[i].type == model_pb2.ModelProto.SentencePiece.BYTE for i in ids)
    stray = set(encoder.rank_bpe.spelled_ranks())
    assert any(rank in stray for text in unseen for rank in encoder.rank_bpe.encoding.encode_ordinary(text))


def test_rank_bpe_steps_aside_where_it_would_not_be_exact(model, texts):
    """Ties in score, a piece SentencePiece can never produce from its own text, user-defined pieces:
    each turns rank BPE off (the segment cache takes over, still exact)."""
    pytest.importorskip("tiktoken")
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model)
    Piece = model_pb2.ModelProto.SentencePiece
    tied = model_pb2.ModelProto()
    tied.CopyFrom(proto)
    normal = [p for p in tied.pieces if p.type == Piece.NORMAL and len(p.piece) > 1]
    normal[5].score = normal[6].score
    dead = append_pieces(proto, ["\u2581qqqqqqqqqqqq"])
    user = model_pb2.ModelProto()
    user.CopyFrom(proto)
    user.pieces.append(Piece(piece="<sep>", score=0.0, type=Piece.USER_DEFINED))
    for changed, why in ((tied, "same score"), (dead, "own text"), (user, "user-defined")):
        encoder = Encoder(changed.SerializeToString())
        assert encoder.rank_bpe is None and why in encoder.rank_bpe_off
        check_exact(encoder, texts + ["a qqqqqqqqqqqq b <sep> c"])
