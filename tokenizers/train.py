"""Train a SentencePiece tokenizer on a sample of curated (or plain) text, LLaMA-style.

Defaults follow LLaMA's tokenizer: BPE, byte fallback (every UTF-8 text
encodes without unknown tokens and decodes back exactly), digits split one per
token, identity normalization (the text is not rewritten: full-width
punctuation stays full-width), whitespace kept as is.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict

import pyarrow as pa
import pyarrow.compute as pc
import sentencepiece as spm

from curate.tokenizers.corpus import InputFile, ReadCounts, sample_documents, training_lines
from curate.tokenizers.params import TrainParams

__all__ = ["TrainParams", "train_model", "train_tokenizer", "write_json", "write_model"]


def trainer_options(params: TrainParams) -> dict:
    """The SentencePiece trainer arguments for ``params``."""
    return dict(
        vocab_size=params.vocab_size, model_type=params.model_type, byte_fallback=params.byte_fallback,
        split_digits=params.split_digits, normalization_rule_name=params.normalization,
        add_dummy_prefix=params.add_dummy_prefix, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        character_coverage=params.character_coverage, user_defined_symbols=list(params.special_tokens),
        unk_id=params.unk_id, bos_id=params.bos_id, eos_id=params.eos_id, pad_id=params.pad_id,
        max_sentence_length=params.max_sentence_bytes, input_sentence_size=params.max_sentences,
        shuffle_input_sentence=True, train_extremely_large_corpus=False,
        num_threads=params.threads or os.cpu_count() or 1, minloglevel=2,
    )


class NoTrainingText(ValueError):
    """The sample reached the trainer empty."""


def train_model(lines, params: TrainParams, **extra_options) -> bytes:
    """Train on an iterator of lines; returns the serialized model. ``extra_options`` go to the trainer as is."""
    model = io.BytesIO()
    counted = _Counting(lines)
    spm.set_random_generator_seed(params.seed + 1)  # sentence shuffling: reruns agree
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=counted, model_writer=model,
                                       **{**trainer_options(params), **extra_options})
    except RuntimeError as err:
        if counted.error is not None:  # reading the input failed: its own one-line error, not SentencePiece's trace
            raise counted.error from None
        if counted.lines == 0:
            raise NoTrainingText("no training text: the inputs hold no non-blank lines after sampling") from None
        if "smaller than required_chars" in str(err):
            raise ValueError(f"vocab_size {params.vocab_size} is below the number of distinct characters the model "
                             f"must cover ({str(err).split(' vs ')[-1].split('.')[0]}): raise the vocabulary size or "
                             "lower character_coverage") from None
        raise ValueError(f"SentencePiece training failed: {err}") from None
    return model.getvalue()


class _Counting:
    """Wraps the line iterator to count what SentencePiece was given, and to keep the error that
    stopped it: SentencePiece reports an iterator's exception as a RuntimeError with a trace in its text."""

    def __init__(self, lines):
        self._lines, self.lines, self.bytes = iter(lines), 0, 0
        self.error: Exception | None = None

    def __iter__(self):
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            raise
        except (ValueError, OSError) as err:
            self.error = err
            raise
        self.lines += 1
        self.bytes += len(line)
        return line


def bytes_per_token(sp: spm.SentencePieceProcessor, heldout: list[pa.Table]) -> list[dict]:
    """UTF-8 bytes per token on held-out documents, per source and language."""
    totals: dict[tuple, Counter] = defaultdict(Counter)
    for table in heldout:
        texts = table["text"].to_pylist()
        encoded = sp.encode(texts)
        for src, lang, text, ids in zip(table["source"].to_pylist(), table["lang"].to_pylist(), texts, encoded):
            key = (src, lang or "und")
            totals[key]["docs"] += 1
            totals[key]["bytes"] += len(text.encode("utf-8"))
            totals[key]["tokens"] += len(ids)
            totals[key]["byte_fallback_tokens"] += sum(1 for i in ids if sp.is_byte(i))
    rows = []
    for (src, lang), c in sorted(totals.items()):
        rows.append({"source": src, "lang": lang, "docs": c["docs"], "bytes": c["bytes"], "tokens": c["tokens"],
                     "bytes_per_token": round(c["bytes"] / c["tokens"], 4) if c["tokens"] else None,
                     "byte_fallback_share": round(c["byte_fallback_tokens"] / c["tokens"], 5) if c["tokens"] else None})
    return rows


def train_tokenizer(files: list[InputFile], output: str, params: TrainParams) -> dict:
    """Sample, train, write ``output/tokenizer.model``, ``tokenizer.vocab`` and ``report.json``; return the report."""
    os.makedirs(output, exist_ok=True)
    counts = ReadCounts()
    started = time.perf_counter()
    batches, heldout = sample_documents(files, sample_bytes=params.sample_bytes,
                                        heldout_fraction=params.heldout_fraction, seed=params.seed,
                                        source_weights=params.source_weights, counts=counts)
    sampled: Counter = Counter()

    def tally(batches):
        for table in batches:
            for src, n in zip(table["source"].to_pylist(), pc.binary_length(table["text"]).to_pylist()):
                sampled[src] += n
            yield table

    model = train_model(training_lines(tally(batches), params.max_sentence_bytes), params)
    train_seconds = time.perf_counter() - started
    write_model(model, output)
    sp = spm.SentencePieceProcessor(model_proto=model)
    report = {
        "tokenizer": os.path.join(output, "tokenizer.model"),
        "vocab_size": sp.get_piece_size(),
        "model_type": params.model_type,
        "sampled_bytes_by_source": dict(sampled),
        "skipped": dict(counts.skipped),
        "train_seconds": round(train_seconds, 2),
        "heldout": bytes_per_token(sp, heldout),
        "params": asdict(params),
    }
    write_json(report, os.path.join(output, "report.json"))
    return report


def write_model(model: bytes, output: str) -> None:
    """Write ``tokenizer.model`` and a ``tokenizer.vocab`` (piece TAB score per line), each renamed into place."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    _write_bytes(model, os.path.join(output, "tokenizer.model"))
    vocab = "".join(f"{p.piece}\t{p.score:g}\n" for p in proto.pieces)
    _write_bytes(vocab.encode("utf-8"), os.path.join(output, "tokenizer.vocab"))


def _write_bytes(data: bytes, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(obj: dict, path: str) -> None:
    _write_bytes((json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), path)
