"""Extend a SentencePiece BPE tokenizer with Chinese pieces, keeping every base id and behaviour.

Chinese-LLaMA's merge script (train a Chinese model, append its pieces to
LLaMA's) has four measurable faults, each avoided here:

* it appended multi-digit pieces ("2023" became "20"+"23"): only pieces whose
  characters are all in the chosen scripts (Han by default) are appended, and
  the Chinese model splits digits, so no piece holds a digit;
* new pieces got score 0, which outranks every base merge in SentencePiece BPE
  (the highest-scoring mergeable pair wins), so English text tokenized
  differently: new pieces here score below the lowest base piece, in the
  Chinese model's own order, so a base merge always wins;
* some appended pieces could never be produced (no pair of pieces merges into
  them): every new piece is checked and dead ones are dropped until none is left;
* its Chinese model normalized with NFKC (full-width punctuation rewritten):
  the Chinese model here uses identity normalization.

A piece P is produced somewhere iff encoding P's own text alone yields P: the
merges inside P happen in the same order whatever surrounds it, and a merge
across P's edge only takes characters away from it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from curate.tokenizers.corpus import InputFile, ReadCounts, read_documents, sample_documents, training_lines
from curate.tokenizers.train import TrainParams, train_model, write_json, write_model

#: Script name -> code point ranges (inclusive). Only CJK-specific blocks: adding a piece made of
#: characters English text also uses (curly quotes, dashes) could change how English is tokenized.
SCRIPTS: dict[str, list[tuple[int, int]]] = {
    "han": [(0x3007, 0x3007), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F),
            (0x30000, 0x323AF)],
    "cjk_punct": [(0x3000, 0x3006), (0x3008, 0x303F), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0xFF01, 0xFF0F),
                  (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65)],
    "bopomofo": [(0x3100, 0x312F), (0x31A0, 0x31BF)],
    "kana": [(0x3040, 0x30FF), (0x31F0, 0x31FF)],
}
SPACE = "\u2581"


@dataclass
class ExtendParams:
    vocab_size: int = 20000
    """Vocabulary of the Chinese model trained on the input (a soft limit on small corpora)."""
    scripts: list[str] = field(default_factory=lambda: ["han", "cjk_punct"])
    """A new piece is appended only if all its characters (but a leading space) are in these scripts."""
    lang: str = "zh"
    """With curated input, train on documents whose ``lang`` starts with this (all text for plain input)."""
    sample_bytes: int = 1 << 30
    heldout_fraction: float = 0.02
    character_coverage: float = 0.9995
    max_sentence_bytes: int = 8192
    eval_bytes: int = 4 << 20
    """Held-out text (Chinese, and English for the identity check) used for the report, per language."""
    seed: int = 0
    threads: int = 0

    def validate(self) -> None:
        if self.vocab_size < 100:
            raise ValueError("vocab_size: must be at least 100")
        unknown = [s for s in self.scripts if s not in SCRIPTS]
        if unknown or not self.scripts:
            raise ValueError(f"scripts: unknown {unknown[0] if unknown else '(empty)'} (known: {', '.join(SCRIPTS)})")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError("heldout_fraction: must be in [0, 1)")
        if not 0.9 <= self.character_coverage <= 1:
            raise ValueError("character_coverage: must be in [0.9, 1]")


def in_scripts(piece: str, scripts: list[str]) -> bool:
    """All characters after any leading spaces fall in ``scripts`` (and there is at least one)."""
    body = piece.lstrip(SPACE)
    if not body:
        return False
    ranges = [r for s in scripts for r in SCRIPTS[s]]
    return all(any(lo <= ord(ch) <= hi for lo, hi in ranges) for ch in body)


def load_proto(path_or_bytes: str | bytes) -> model_pb2.ModelProto:
    proto = model_pb2.ModelProto()
    if isinstance(path_or_bytes, str):
        with open(path_or_bytes, "rb") as f:
            path_or_bytes = f.read()
    try:
        proto.ParseFromString(path_or_bytes)
    except Exception as err:
        raise ValueError(f"not a SentencePiece model ({err})") from None
    if not proto.pieces:
        raise ValueError("not a SentencePiece model (no pieces)")
    return proto


def append_pieces(base: model_pb2.ModelProto, pieces: list[str]) -> model_pb2.ModelProto:
    """A copy of ``base`` with ``pieces`` appended as normal pieces, scored below every base piece."""
    merged = model_pb2.ModelProto()
    merged.CopyFrom(base)
    floor = min(p.score for p in base.pieces)
    for rank, piece in enumerate(pieces):
        merged.pieces.append(model_pb2.ModelProto.SentencePiece(
            piece=piece, score=floor - 1.0 - rank, type=model_pb2.ModelProto.SentencePiece.NORMAL))
    merged.trainer_spec.vocab_size = len(merged.pieces)
    return merged


def dead_pieces(proto: model_pb2.ModelProto, ids: list[int]) -> list[int]:
    """The ids among ``ids`` that no text encodes to (normal pieces only)."""
    probe = model_pb2.ModelProto()
    probe.CopyFrom(proto)
    probe.normalizer_spec.add_dummy_prefix = False
    sp = spm.SentencePieceProcessor(model_proto=probe.SerializeToString())
    normal = [i for i in ids if proto.pieces[i].type == model_pb2.ModelProto.SentencePiece.NORMAL]
    texts = [proto.pieces[i].piece.replace(SPACE, " ") for i in normal]
    return [i for i, got in zip(normal, sp.encode(texts)) if got != [i]]


def choose_pieces(base: model_pb2.ModelProto, chinese: model_pb2.ModelProto,
                  scripts: list[str]) -> tuple[model_pb2.ModelProto, dict]:
    """Append the Chinese model's new in-script pieces to ``base``; drop dead ones until none is left."""
    have = {p.piece for p in base.pieces}
    normal = [p for p in chinese.pieces if p.type == model_pb2.ModelProto.SentencePiece.NORMAL]
    normal.sort(key=lambda p: -p.score)  # stable: the Chinese model's own merge order
    candidates, skipped_script, skipped_present = [], 0, 0
    for p in normal:
        if p.piece in have:
            skipped_present += 1
        elif not in_scripts(p.piece, scripts):
            skipped_script += 1
        else:
            candidates.append(p.piece)
            have.add(p.piece)
    dropped: list[str] = []
    while True:
        merged = append_pieces(base, candidates)
        dead = dead_pieces(merged, list(range(len(base.pieces), len(merged.pieces))))
        if not dead:
            break
        dead_set = {merged.pieces[i].piece for i in dead}
        dropped += sorted(dead_set)
        candidates = [p for p in candidates if p not in dead_set]
    return merged, {
        "chinese_pieces": len(normal), "already_in_base": skipped_present, "outside_scripts": skipped_script,
        "dead_dropped": len(dropped), "dead_dropped_examples": dropped[:20], "added": len(candidates),
    }


def _nonspace_chars(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def compare(base: spm.SentencePieceProcessor, extended: spm.SentencePieceProcessor,
            zh_texts: list[str], en_texts: list[str]) -> dict:
    """Tokens per Chinese character and per English word, before and after; English lines tokenized identically."""
    out: dict = {}
    if zh_texts:
        chars = sum(_nonspace_chars(t) for t in zh_texts)
        before = sum(len(ids) for ids in base.encode(zh_texts))
        after = sum(len(ids) for ids in extended.encode(zh_texts))
        out["zh"] = {"docs": len(zh_texts), "chars": chars, "tokens_per_char_before": round(before / chars, 4),
                     "tokens_per_char_after": round(after / chars, 4),
                     "reduction": round(1 - after / before, 4)}
    if en_texts:
        lines = [line for t in en_texts for line in t.split("\n") if line.strip()]
        words = sum(len(line.split()) for line in lines)
        base_ids, ext_ids = base.encode(lines), extended.encode(lines)
        same = sum(1 for a, b in zip(base_ids, ext_ids) if a == b)
        out["en"] = {"lines": len(lines), "words": words,
                     "tokens_per_word_before": round(sum(map(len, base_ids)) / max(words, 1), 4),
                     "tokens_per_word_after": round(sum(map(len, ext_ids)) / max(words, 1), 4),
                     "lines_identical": round(same / len(lines), 6) if lines else None}
    return out


def _english_texts(files: list[InputFile], cap_bytes: int, lang: str | None) -> list[str]:
    texts, used = [], 0
    for item in files:
        for table in read_documents(item, ReadCounts()):
            for text, doc_lang in zip(table["text"].to_pylist(), table["lang"].to_pylist()):
                if lang is not None and not (doc_lang or "").startswith(lang):
                    continue
                texts.append(text)
                used += len(text)
                if used >= cap_bytes:
                    return texts
    return texts


def extend_tokenizer(base_path: str, files: list[InputFile], output: str, params: ExtendParams,
                     english_files: list[InputFile] | None = None) -> dict:
    """Train a Chinese BPE model on ``files`` and append its new pieces to the base; write model, vocab, report.

    English held-out text for the identity check comes from ``english_files``,
    or from the curated input's documents whose ``lang`` is ``en``.
    """
    base = load_proto(base_path)
    if base.trainer_spec.model_type != model_pb2.TrainerSpec.BPE:
        raise ValueError(f"{base_path}: the base must be a SentencePiece BPE model (this one is "
                         f"{model_pb2.TrainerSpec.ModelType.Name(base.trainer_spec.model_type)})")
    started = time.perf_counter()
    counts = ReadCounts()
    curated = any(f.format == "curated" for f in files)
    batches, heldout = sample_documents(files, sample_bytes=params.sample_bytes,
                                        heldout_fraction=params.heldout_fraction, seed=params.seed,
                                        lang_prefix=params.lang if curated else None,
                                        heldout_bytes=params.eval_bytes, counts=counts)
    chinese_params = TrainParams(
        vocab_size=params.vocab_size, model_type="bpe", byte_fallback=False, split_digits=True,
        normalization="identity", add_dummy_prefix=base.normalizer_spec.add_dummy_prefix,
        character_coverage=params.character_coverage, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        max_sentence_bytes=params.max_sentence_bytes, seed=params.seed, threads=params.threads)
    chinese_model = train_model(training_lines(batches, params.max_sentence_bytes), chinese_params,
                                hard_vocab_limit=False)
    chinese = load_proto(chinese_model)
    merged, pieces_report = choose_pieces(base, chinese, params.scripts)
    os.makedirs(output, exist_ok=True)
    write_model(merged.SerializeToString(), output)
    with open(os.path.join(output, "chinese.model"), "wb") as f:
        f.write(chinese_model)
    seconds = time.perf_counter() - started

    base_sp = spm.SentencePieceProcessor(model_proto=base.SerializeToString())
    ext_sp = spm.SentencePieceProcessor(model_proto=merged.SerializeToString())
    zh_texts = [t for table in heldout for t in table["text"].to_pylist()]
    if english_files:
        en_texts = _english_texts(english_files, params.eval_bytes, None)
    elif curated:
        en_texts = _english_texts(files, params.eval_bytes, "en")
    else:
        en_texts = []
    report = {
        "tokenizer": os.path.join(output, "tokenizer.model"),
        "base": os.path.abspath(base_path),
        "base_vocab_size": len(base.pieces),
        "chinese_vocab_size": len(chinese.pieces),
        "vocab_size": len(merged.pieces),
        **pieces_report,
        "dead_after": len(dead_pieces(merged, list(range(len(base.pieces), len(merged.pieces))))),
        "skipped": dict(counts.skipped),
        "seconds": round(seconds, 2),
        "heldout": compare(base_sp, ext_sp, zh_texts, en_texts),
        "params": asdict(params),
    }
    write_json(report, os.path.join(output, "report.json"))
    return report
