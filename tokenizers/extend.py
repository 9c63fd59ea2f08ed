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
import re
import time
from collections import Counter
from dataclasses import asdict

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from curate.tokenizers.corpus import InputFile, ReadCounts, read_documents, sample_documents, training_lines
from curate.tokenizers.params import SCRIPTS, SPACE, ExtendParams, TrainParams
from curate.tokenizers.train import NoTrainingText, train_model, write_json, write_model

__all__ = ["SCRIPTS", "ExtendParams", "choose_pieces", "extend_tokenizer", "in_scripts", "load_proto"]

def in_scripts(piece: str, scripts: list[str]) -> bool:
    """All characters after any leading spaces fall in ``scripts`` (and there is at least one)."""
    body = piece.lstrip(SPACE)
    if not body:
        return False
    ranges = [r for s in scripts for r in SCRIPTS[s]]
    return all(any(lo <= ord(ch) <= hi for lo, hi in ranges) for ch in body)


def load_proto(path_or_bytes: str | bytes) -> model_pb2.ModelProto:
    proto = model_pb2.ModelProto()
    where = f"{path_or_bytes}: " if isinstance(path_or_bytes, str) else ""
    if isinstance(path_or_bytes, str):
        with open(path_or_bytes, "rb") as f:
            path_or_bytes = f.read()
    try:
        proto.ParseFromString(path_or_bytes)
    except Exception as err:
        raise ValueError(f"{where}not a SentencePiece model ({err})") from None
    if not proto.pieces:
        raise ValueError(f"{where}not a SentencePiece model (no pieces)")
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
                  scripts: list[str], max_piece_chars: int = 16) -> tuple[model_pb2.ModelProto, dict]:
    """Append the Chinese model's new in-script pieces of at most ``max_piece_chars`` characters to ``base``;
    drop dead ones until none is left.

    Leaving out a long piece cannot kill a shorter one: a piece's own text encodes
    through pieces no longer than itself.
    """
    have = {p.piece for p in base.pieces}
    normal = [p for p in chinese.pieces if p.type == model_pb2.ModelProto.SentencePiece.NORMAL]
    normal.sort(key=lambda p: -p.score)  # stable: the Chinese model's own merge order
    candidates, skipped_script, skipped_present, skipped_long = [], 0, 0, 0
    for p in normal:
        if p.piece in have:
            skipped_present += 1
        elif not in_scripts(p.piece, scripts):
            skipped_script += 1
        elif len(p.piece.lstrip(SPACE)) > max_piece_chars:
            skipped_long += 1
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
        "too_long": skipped_long, "dead_dropped": len(dropped), "dead_dropped_examples": dropped[:20],
        "added": len(candidates), "added_by_length": length_histogram(candidates),
    }


def length_histogram(pieces: list[str]) -> dict[str, int]:
    """Pieces per length in characters (a leading space not counted), shortest first."""
    counts = Counter(len(p.lstrip(SPACE)) for p in pieces)
    return {str(n): counts[n] for n in sorted(counts)}


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


class _ScriptCount:
    """Passes the training lines through, counting them and their characters in ``scripts``."""

    def __init__(self, lines, scripts: list[str]):
        self._lines = iter(lines)
        ranges = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for s in scripts for lo, hi in SCRIPTS[s])
        self._pattern = re.compile(f"[{ranges}]+")
        self.lines = self.chars = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.lines += 1
        self.chars += sum(map(len, self._pattern.findall(line)))
        return line


def _no_text(params: ExtendParams, counts: ReadCounts, curated: bool) -> str:
    """Why the sample is empty: no document in the asked language (and which there are), or no text at all."""
    if curated:
        seen = ", ".join(f"{lang} {n:,}" for lang, n in counts.langs.most_common(8)) or "none"
        return (f"no documents with lang {params.lang!r} in the curated input (documents by lang: {seen}); "
                "pick --lang from those, or give plain text files")
    return "no training text: the inputs hold no non-blank lines"


def _check_sample_size(chars: int, params: ExtendParams) -> None:
    """Refuse a sample too small for the vocabulary asked: its pieces would be memorised phrases."""
    per = params.min_chars_per_piece
    need = int(params.vocab_size * per)
    if chars >= need:
        return
    scripts = "+".join(params.scripts)
    supports = int(chars // per)
    if supports >= 100:
        advice = f"give more text, a smaller --vocab-size (this sample supports about {supports:,})"
    else:
        advice = "give more text (no --vocab-size of 100 or more fits this sample)"
    raise ValueError(
        f"the sample holds {chars:,} characters of {scripts} text; a {params.vocab_size:,}-piece model needs at "
        f"least {need:,} (about {need * 3 / 1e6:.1f} MB of UTF-8, {per:g} per piece; below that BPE merges "
        f"phrases seen once or twice): {advice}, or --min-chars-per-piece 0 to extend anyway")


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
                                        lang_prefix=params.lang, heldout_bytes=params.eval_bytes, counts=counts)
    chinese_params = TrainParams(
        vocab_size=params.vocab_size, model_type="bpe", byte_fallback=False, split_digits=True,
        normalization="identity", add_dummy_prefix=base.normalizer_spec.add_dummy_prefix,
        character_coverage=params.character_coverage, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        max_sentence_bytes=params.max_sentence_bytes, seed=params.seed, threads=params.threads)
    sample = _ScriptCount(training_lines(batches, params.max_sentence_bytes), params.scripts)
    try:
        chinese_model = train_model(sample, chinese_params, hard_vocab_limit=False,
                                    max_sentencepiece_length=params.max_piece_chars)
    except NoTrainingText:
        raise ValueError(_no_text(params, counts, curated)) from None
    _check_sample_size(sample.chars, params)
    chinese = load_proto(chinese_model)
    merged, pieces_report = choose_pieces(base, chinese, params.scripts, params.max_piece_chars)
    if not pieces_report["added"]:
        raise ValueError(
            f"no piece to add: of the Chinese model's {pieces_report['chinese_pieces']:,} pieces, "
            f"{pieces_report['already_in_base']:,} are in the base, {pieces_report['outside_scripts']:,} have "
            f"characters outside --scripts {','.join(params.scripts)}, {pieces_report['too_long']:,} are longer "
            f"than {params.max_piece_chars} characters")
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
        "sample": {"lines": sample.lines, "script_chars": sample.chars,
                   "script_chars_needed": int(params.vocab_size * params.min_chars_per_piece)},
        **({"documents_by_lang": dict(counts.langs.most_common())} if curated else {}),
        **pieces_report,
        "dead_after": len(dead_pieces(merged, list(range(len(base.pieces), len(merged.pieces))))),
        "skipped": dict(counts.skipped),
        "seconds": round(seconds, 2),
        "heldout": compare(base_sp, ext_sp, zh_texts, en_texts),
        "params": asdict(params),
    }
    write_json(report, os.path.join(output, "report.json"))
    return report
