"""The cached encoder on text it has never seen (#16): segments cut at line breaks too.

Exactness is what matters: with the shortcut (segments cut at line breaks, so a word at a line
end is looked up as the same word elsewhere) the ids must be SentencePiece's own, on the first
pass over a text as on later ones, and the shortcut must switch itself off for a model where it
would not be exact.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from curate.tokenizers.corpus import input_files
from curate.tokenizers.encoder import Encoder
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
    encoder = Encoder(model)
    assert encoder.cached and encoder.newline_split
    check_exact(encoder, texts)


def test_shortcuts_step_aside_where_they_would_not_be_exact(model, texts, shared_data, tmp_path):
    """A piece holding a newline stops the line cuts, and so does a model without byte fallback."""
    proto = model_pb2.ModelProto()
    proto.ParseFromString(model)
    with_newline = append_pieces(proto, ["d\nT", "\n\n"])
    encoder = Encoder(with_newline.SerializeToString())
    assert encoder.cached and not encoder.newline_split
    check_exact(encoder, texts + ["and\nThe end\n\nThe"])

    encoder = Encoder(trained(shared_data, str(tmp_path), byte_fallback=False))
    assert encoder.cached and not encoder.newline_split
    check_exact(encoder, texts)
