"""SentencePiece encoding with a per-word cache: the same ids as ``encode``, ~3x faster on English.

With SentencePiece's usual training settings no piece holds a space (``▁``)
after a non-space character, so BPE merges never cross the start of a
space-run-plus-word segment: a text encodes as the concatenation of its
segments' encodings. Segments repeat (Zipf), so each distinct one is encoded
once by SentencePiece and looked up afterwards. The shortcut is taken only
when it is exact for the model (BPE, identity normalization, no extra
whitespace removal, no piece with an inner space); otherwise every text goes
through SentencePiece itself.
"""

from __future__ import annotations

import re
from itertools import chain

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

SPACE = "\u2581"
#: A run of spaces followed by a run of non-spaces, or a trailing run of spaces.
SEGMENT = re.compile("[ \u2581]*[^ \u2581]+|[ \u2581]+")
#: The same, with line breaks cut too: a run of newlines starts a segment of its own (with the
#: word that follows it). Exact for byte-fallback models none of whose pieces holds a newline
#: (``Encoder.newline_split``): then no merge joins a newline to what precedes it. Otherwise a word
#: at a line end ("with\nalmost") is a segment of its own: most of hard-wrapped text never seen before.
SEGMENT_LINES = re.compile("[ \u2581]*[^ \u2581\n]+|[ \u2581]+|\n+[^ \u2581\n]*")
CACHE_LIMIT = 1 << 19
DOC_END = -1  # marks the end of a text in the flat id array; never a piece id
DOC_END_BYTES = np.array([DOC_END], dtype=np.int32).tobytes()
#: Texts whose words are longer than this on average (Chinese, Japanese: few spaces) repeat few
#: segments, so the cache would only cost time: they go to SentencePiece whole.
MAX_MEAN_SEGMENT_CHARS = 16


def segment_safe(proto: model_pb2.ModelProto) -> bool:
    """True when encoding segment by segment gives exactly SentencePiece's ids for this model."""
    spec = proto.normalizer_spec
    if proto.trainer_spec.model_type != model_pb2.TrainerSpec.BPE:
        return False
    if spec.name != "identity" or spec.remove_extra_whitespaces or not spec.escape_whitespaces:
        return False
    if proto.trainer_spec.treat_whitespace_as_suffix:
        return False
    return all(SPACE not in p.piece.lstrip(SPACE) and " " not in p.piece for p in proto.pieces)


class Encoder:
    """``encode(texts) -> list[list[int]]``, equal to ``SentencePieceProcessor.encode(texts)``."""

    def __init__(self, model: bytes):
        self.proto = model_pb2.ModelProto()
        self.proto.ParseFromString(model)
        self.sp = spm.SentencePieceProcessor(model_proto=model)
        self.cached = segment_safe(self.proto)
        self.dummy_prefix = self.proto.normalizer_spec.add_dummy_prefix
        #: Split single-spaced texts with str.split (faster than the regex); needs the dummy prefix.
        self.word_split = self.dummy_prefix
        #: Cut segments at line breaks as well (SEGMENT_LINES): exact when no piece holds a newline and
        #: a newline is a byte piece (without byte fallback SentencePiece would make one <unk> of it
        #: and the unknown characters beside it).
        self.newline_split = (self.cached and self.proto.trainer_spec.byte_fallback
                              and not any("\n" in p.piece for p in self.proto.pieces))
        self._cache: dict = {}  # segment -> its ids as int32 bytes
        #: Segments looked up in the cache, and those SentencePiece had to encode (new ones): the
        #: cache's hit rate is 1 - encoded / looked_up (benchmarks report it as it warms).
        self.looked_up = self.encoded = 0
        if self.cached:
            bare = model_pb2.ModelProto()
            bare.CopyFrom(self.proto)
            bare.normalizer_spec.add_dummy_prefix = False
            self._segment_sp = spm.SentencePieceProcessor(model_proto=bare.SerializeToString())

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids, as ``SentencePieceProcessor.encode`` gives them."""
        if not self.cached:
            return self.sp.encode(texts)
        flat, lengths = self.encode_flat(texts, -1)
        ends = np.cumsum(lengths)
        return [flat[end - n:end].tolist() for end, n in zip(ends.tolist(), lengths.tolist())]

    def encode_flat(self, texts: list[str], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
        """All texts' ids in one int64 array, ``eos_id`` after each (none if negative); each text's length."""
        if not self.cached:
            encoded = self.sp.encode(texts)
            tail = [eos_id] if eos_id >= 0 else []
            flat = np.fromiter(chain.from_iterable(chain.from_iterable((ids, tail) for ids in encoded)), np.int64)
            return flat, np.array([len(ids) + len(tail) for ids in encoded], dtype=np.int64)
        cache = self._cache
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        cache[None] = DOC_END_BYTES
        lines = self.newline_split
        findall = (SEGMENT_LINES if lines else SEGMENT).findall
        prefix = " " if self.dummy_prefix else ""
        words_ok = self.word_split
        # keys that are their own surface (a word key w stands for " " + w)
        literal = " \u2581\n" if lines else " \u2581"
        segments: list = []
        extend, append = segments.extend, segments.append
        whole: list[int] = []
        for i, text in enumerate(texts):
            if not text:
                pass
            elif len(text) > MAX_MEAN_SEGMENT_CHARS * (text.count(" ") + (text.count("\n") if lines else 0) + 1):
                whole.append(i)
                append(~i)  # a text SentencePiece encodes whole, looked up by this negative key
            elif (words_ok and "  " not in text and text[0] != " " and text[-1] != " " and SPACE not in text
                  and not (lines and "\n" in text)):
                # single spaces only: each word is the segment " " + word; a word never starts with a
                # space (nor, with line cuts, a newline), so this key cannot collide with a regex
                # segment (which starts with one of them)
                extend(text.split(" "))
            else:
                extend(findall(prefix + text))
            append(None)
        self.looked_up += len(segments) - len(texts)
        if whole:
            self.encoded += len(whole)
            cache.update(zip([~i for i in whole], _as_bytes(self.sp.encode([texts[i] for i in whole]))))
        try:
            try:
                joined = b"".join(map(cache.__getitem__, segments))
            except KeyError:  # new segments: encode them all at once, then join
                new = [s for s in set(segments).difference(cache) if type(s) is str]
                self.encoded += len(new)
                surfaces = [s if not words_ok or s[0] in literal else " " + s for s in new]
                cache.update(zip(new, _as_bytes(self._segment_sp.encode(surfaces))))
                joined = b"".join(map(cache.__getitem__, segments))
        finally:
            for i in whole:
                del cache[~i]
        flat = np.frombuffer(joined, dtype=np.int32).astype(np.int64)
        ends = np.flatnonzero(flat == DOC_END)
        lengths = np.diff(ends, prepend=-1)
        if eos_id >= 0:
            flat[ends] = eos_id
            return flat, lengths
        return flat[flat != DOC_END], lengths - 1


def _as_bytes(encoded: list[list[int]]) -> list[bytes]:
    """Id lists -> their int32 bytes: the cache joins bytes, far faster than chaining Python ints."""
    flat = np.fromiter(chain.from_iterable(encoded), dtype=np.int32).tobytes()
    out, start = [], 0
    for ids in encoded:
        end = start + 4 * len(ids)
        out.append(flat[start:end])
        start = end
    return out
