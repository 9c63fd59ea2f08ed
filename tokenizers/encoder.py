"""SentencePiece encoding, faster: the same ids as ``SentencePieceProcessor.encode``.

Two shortcuts, each taken only where it is exact for the model:

- **Rank BPE** (``RankBPE``): SentencePiece's BPE merges, at each step, the adjacent pair whose
  concatenation is the piece with the highest score (the leftmost on a tie). tiktoken's byte-pair
  core merges the adjacent pair whose concatenated bytes have the lowest rank (the leftmost on a
  tie). Give every piece a rank in score order, the characters and the bytes that spell them
  first, and the two compute the same thing; tiktoken does it in Rust, with its regex cutting the
  same segments as below: about 3x SentencePiece's own speed on English and 2x the segment cache's
  on text never seen before, with no warm-up (it keeps nothing from one text to the next). Used
  when tiktoken is installed and the model passes ``RankBPE.build``'s checks.
- **Segment cache** (otherwise): the per-segment cache described next.

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
#: segments, so the cache would only cost time: they go to SentencePiece whole. (Rank BPE takes the
#: same rule: on Chinese SentencePiece is the faster of the two, ~20 MB/s against ~15 per core.)
MAX_MEAN_SEGMENT_CHARS = 16
#: SEGMENT and SEGMENT_LINES for tiktoken's regex, on text whose ``▁`` are spaces (rank BPE spells ``▁`` as a
#: space: the text needs no rewriting, and ASCII text stays ASCII, which tiktoken takes without converting it).
RANK_PATTERN = " *[^ ]+| +"
RANK_PATTERN_LINES = " *[^ \\n]+| +|\\n+[^ \\n]*"
Piece = model_pb2.ModelProto.SentencePiece
#: Placeholders in the flat array before they are spliced out (DOC_END stays): a text SentencePiece
#: encodes whole, and (at PARTIAL and below) the leading bytes of a character not in the vocabulary.
WHOLE, PARTIAL = -2, -3
RANKS_FLUSH = 1 << 14  # texts handed to tiktoken in one call (joined by TEXT_END)
#: ``RankBPE``'s two special tokens, ranked as DOC_END and WHOLE: a batch's texts go to tiktoken as one string,
#: each followed by TEXT_END (tiktoken encodes the text between two allowed special tokens on its own, so each
#: text's ranks are those of a call of its own), a text SentencePiece encodes whole as WHOLE_TEXT. Used only
#: when no text holds a NUL (then none can hold a marker); otherwise each text is a call of its own, with no
#: special token allowed.
TEXT_END = "\x00<curate: end of text>\x00"
WHOLE_TEXT = "\x00<curate: encoded whole>\x00"


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


class RankBPE:
    """A SentencePiece BPE model as tiktoken ranks, so that tiktoken's core encodes with its merges.

    Every ``▁`` is spelled as a space, in the pieces and in the text (SentencePiece makes each space
    a ``▁`` and takes a ``▁`` in the text as one). Ranks, from merged first to merged last: the 256
    single bytes (the character piece for an ASCII character in the vocabulary or the space, else
    the byte piece ``<0xXX>``); the leading 2 and 3 bytes
    of each multi-byte character piece (no piece: steps on the way to a character); the multi-byte
    character pieces; then every longer piece by descending score. So every character of the
    vocabulary is whole before any two characters merge, as in SentencePiece, whose starting
    symbols are the characters; from there both merge the best-scored pair, leftmost first. A
    character outside the vocabulary stays as its bytes (SentencePiece's byte fallback), though
    some of its leading bytes may be joined under a step rank: ``table`` maps those to PARTIAL - k,
    and ``spelled[k]`` gives their byte pieces.
    """

    def __init__(self, encoding, table: np.ndarray, spelled: list[np.ndarray], end: int, whole: int):
        self.encoding = encoding
        self.table = table  # rank -> piece id (or DOC_END, WHOLE, PARTIAL - k)
        self.spelled = spelled
        self.end, self.whole = end, whole  # ranks (past the vocabulary) of DOC_END and WHOLE
        core = encoding._core_bpe
        #: (text, allowed special tokens) -> its ranks as uint32 bytes (tiktoken >= 0.8 hands its buffer over;
        #: older ones a list)
        self.to_buffer = getattr(core, "encode_to_tiktoken_buffer", None) or (
            lambda text, allowed: np.array(core.encode(text, allowed), dtype=np.uint32).tobytes())
        self.markers = {TEXT_END, WHOLE_TEXT}

    def spelled_ranks(self) -> list[int]:
        """The ranks of leading bytes that are no piece (spelled out as byte pieces when left over)."""
        return np.flatnonzero(self.table <= PARTIAL).tolist()

    @classmethod
    def build(cls, proto: model_pb2.ModelProto, lines: bool, bare_sp) -> tuple[RankBPE | None, str]:
        """(the ranks, "") when encoding with them is exact for ``proto``; else (None, why not).

        ``lines``: segments are cut at line breaks too (``Encoder.newline_split``); ``bare_sp``:
        the model without its dummy prefix, to check that each piece's own text encodes to it.
        """
        try:
            import tiktoken
        except ImportError:
            return None, "tiktoken is not installed"
        if not proto.trainer_spec.byte_fallback:
            return None, "no byte fallback"
        allowed = {Piece.NORMAL, Piece.UNKNOWN, Piece.CONTROL, Piece.BYTE}
        if any(p.type not in allowed for p in proto.pieces):
            return None, "user-defined or unused pieces (SentencePiece matches those apart)"
        byte_piece: dict[int, int] = {}
        chars: dict[str, int] = {}
        longer: list[tuple[float, int, str]] = []
        for i, p in enumerate(proto.pieces):
            if p.type == Piece.BYTE:
                byte_piece[int(p.piece[3:5], 16)] = i
            elif p.type == Piece.NORMAL:
                if len(p.piece) == 1:
                    chars[p.piece] = i
                else:
                    longer.append((-p.score, i, p.piece))
        if len(byte_piece) != 256:
            return None, "not all 256 byte pieces"
        if SPACE not in chars:
            return None, "no piece for the space"
        if len({score for score, _, _ in longer}) != len(longer):
            return None, "two pieces with the same score (SentencePiece breaks such ties by position)"
        if any(c not in chars for _, _, piece in longer for c in piece):
            return None, "a piece holds a character that is not a piece itself"
        # tiktoken takes a regex piece found whole in the ranks as is; SentencePiece merges it: the same
        # only if every piece's own text encodes to that piece (no "dead" piece)
        texts = [piece.replace(SPACE, " ") for _, _, piece in longer]
        if any(ids != [i] for (_, i, _), ids in zip(longer, bare_sp.encode(texts))):
            return None, "a piece whose own text encodes to other pieces"
        ranks: dict[bytes, int] = {}
        ids: list[int] = []
        spelled: list[np.ndarray] = []
        chars[" "] = chars.pop(SPACE)
        for byte in range(256):
            ranks[bytes([byte])] = len(ids)
            ids.append(chars.get(chr(byte), byte_piece[byte]) if byte < 128 else byte_piece[byte])
        steps = sorted({c.encode()[:k] for c in chars for k in range(2, len(c.encode()))}, key=len)
        for step in steps:
            ranks[step] = len(ids)
            ids.append(PARTIAL - len(spelled))
            spelled.append(np.array([byte_piece[b] for b in step], dtype=np.int64))
        for c, i in chars.items():
            if len(c.encode()) > 1:
                ranks[c.encode()] = len(ids)
                ids.append(i)
        for _, i, piece in sorted(longer):
            ranks[piece.replace(SPACE, " ").encode()] = len(ids)
            ids.append(i)
        end, whole = len(ids), len(ids) + 1
        # (with no special token at all, tiktoken's buffer encode would scan each text with an empty regex,
        # ~1.8x slower: a text encoded on its own allows none of the two, and so is encoded as text)
        encoding = tiktoken.Encoding("curate-sentencepiece", pat_str=RANK_PATTERN_LINES if lines else RANK_PATTERN,
                                     mergeable_ranks=ranks, special_tokens={TEXT_END: end, WHOLE_TEXT: whole})
        return cls(encoding, np.array(ids + [DOC_END, WHOLE], dtype=np.int64), spelled, end, whole), ""


class Encoder:
    """``encode(texts) -> list[list[int]]``, equal to ``SentencePieceProcessor.encode(texts)``.

    With rank BPE, threads may share one encoder: it keeps no state from call to call, and tiktoken and
    SentencePiece encode outside the GIL. The segment cache is one dict written by every call: one thread only.

    ``rank_bpe=False`` keeps to the segment cache (benchmarks compare the two).
    """

    def __init__(self, model: bytes, rank_bpe: bool = True):
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
        #: tiktoken's core with this model's merges (``RankBPE``), or None and why not
        self.rank_bpe, self.rank_bpe_off = None, "off by request" if not rank_bpe else "not a segment-safe model"
        if self.cached and rank_bpe:
            self.rank_bpe, self.rank_bpe_off = RankBPE.build(self.proto, self.newline_split, self._segment_sp)

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
        if self.rank_bpe is not None:
            return _doc_lengths(self._rank_flat(texts), eos_id)
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
            elif ((n := len(text)) > MAX_MEAN_SEGMENT_CHARS * ((spaces := text.count(" ")) + 1)
                  and (not lines or n > MAX_MEAN_SEGMENT_CHARS * (spaces + text.count("\n") + 1))):
                # (newlines counted only when the spaces alone leave the mean segment long: most texts
                # have spaces enough, and each count is a pass over the text)
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
        return _doc_lengths(np.frombuffer(joined, dtype=np.int32).astype(np.int64), eos_id)

    def _rank_flat(self, texts: list[str]) -> np.ndarray:
        """All texts' ids through tiktoken's core (``RankBPE``), DOC_END after each.

        The ranks come back as tiktoken's uint32 buffer (``encode_to_tiktoken_buffer``, what its
        ``encode_to_numpy`` calls), for RANKS_FLUSH texts at a time (TEXT_END), and are mapped to piece ids
        with one numpy take: no Python int per token (``encode_ordinary``'s lists cost ~25% more CPU than the
        BPE itself on English), and one call per batch, not per text (a third of the time on short texts).
        """
        bpe = self.rank_bpe
        whole: list[int] = []
        buffers = [self._rank_chunk(texts, first, min(first + RANKS_FLUSH, len(texts)), whole)
                   for first in range(0, len(texts), RANKS_FLUSH)]
        flat = bpe.table[np.frombuffer(buffers[0] if len(buffers) == 1 else b"".join(buffers), dtype=np.uint32)]
        special = np.flatnonzero(flat <= WHOLE)
        if not len(special):
            return flat
        # splice in the texts SentencePiece encodes whole, and spell out stray leading bytes as byte pieces
        encoded = self.sp.encode([texts[i] for i in whole])
        # their ids in one array, DOC_END after each: one pass over SentencePiece's lists (a Python int per id:
        # ~25 ns each, the most of what this costs beyond SentencePiece itself), the ends put in by numpy
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ends = np.cumsum(lengths)
        whole_flat = np.insert(np.fromiter(chain.from_iterable(encoded), dtype=np.int64,
                                           count=int(ends[-1]) if len(ends) else 0),
                               ends, DOC_END)
        whole_ends = (ends + np.arange(1, len(ends) + 1)).tolist()
        parts, start, k = [], 0, 0
        for at, value in zip(special.tolist(), flat[special].tolist()):
            parts.append(flat[start:at])
            if value == WHOLE:
                parts.append(whole_flat[whole_ends[k - 1] if k else 0:whole_ends[k]])
                k += 1
            else:
                parts.append(bpe.spelled[PARTIAL - value])
            start = at + 1
        parts.append(flat[start:])
        return np.concatenate(parts)

    def _encoded_whole(self, text: str) -> bool:
        """A text with few spaces (Chinese, Japanese): SentencePiece encodes it whole."""
        return ((n := len(text)) > MAX_MEAN_SEGMENT_CHARS * ((spaces := text.count(" ")) + 1)
                # newlines counted only when the spaces alone leave the mean segment long: most texts have
                # spaces enough, and each count is a pass over the text
                and (not self.newline_split or n > MAX_MEAN_SEGMENT_CHARS * (spaces + text.count("\n") + 1)))

    def _rank_chunk(self, texts: list[str], first: int, end: int, whole: list[int]):
        """The ranks of ``texts[first:end]`` as uint32 bytes (or tiktoken's buffer of them), the end rank after
        each (a text SentencePiece encodes whole: its index is appended to ``whole``, the WHOLE rank stands for
        it, with no end rank: the splice puts the text's ids and its DOC_END there)."""
        bpe = self.rank_bpe
        prefix = " " if self.dummy_prefix else ""
        lines = self.newline_split
        pieces: list[str] = []
        add = pieces.append
        for i in range(first, end):
            text = texts[i]
            if not text:
                pass
            elif ((n := len(text)) > MAX_MEAN_SEGMENT_CHARS * ((spaces := text.count(" ")) + 1)
                  and (not lines or n > MAX_MEAN_SEGMENT_CHARS * (spaces + text.count("\n") + 1))):
                # ``_encoded_whole`` written out: a method call per text costs as much as the counts
                whole.append(i)
                add(WHOLE_TEXT)  # no end rank: the splice puts the text's ids and its DOC_END there
                continue
            else:
                # SentencePiece's normalization for a segment-safe model: the dummy prefix, and spaces and
                # ``▁`` the same (here both spaces)
                add(prefix + (text.replace(SPACE, " ") if SPACE in text else text))
            add(TEXT_END)
        joined = "".join(pieces)
        if joined.count("\x00") == 2 * (end - first):  # the markers' NULs only, one marker a text
            try:
                return bpe.to_buffer(joined, bpe.markers)
            except UnicodeEncodeError:  # a lone surrogate: each text on its own, below
                pass
        # each text on its own, no special token allowed (a text may hold one)
        end_rank = np.array([bpe.end], dtype=np.uint32).tobytes()
        whole_rank = np.array([bpe.whole], dtype=np.uint32).tobytes()
        no_special: set = set()
        parts: list = []
        for i in range(first, end):
            text = texts[i]
            if not text:
                pass
            elif self._encoded_whole(text):
                parts.append(whole_rank)
                continue
            else:
                text = prefix + (text.replace(SPACE, " ") if SPACE in text else text)
                try:
                    parts.append(bpe.to_buffer(text, no_special))
                except UnicodeEncodeError:  # a lone surrogate: as tiktoken's encode_ordinary handles it
                    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
                    parts.append(bpe.to_buffer(text, no_special))
            parts.append(end_rank)
        return b"".join(parts)


def _doc_lengths(flat: np.ndarray, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A flat id array with DOC_END after each text -> (ids with ``eos_id`` there or nothing, each text's length)."""
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
