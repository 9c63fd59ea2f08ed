"""Vectorized MinHash signatures and LSH band keys for a batch of documents.

Shingles are word n-grams (space-delimited text) or character n-grams (Chinese
and Japanese). Tokenizing and hashing run on the batch's UTF-8 bytes with numpy:
ASCII is lower-cased in place (NFKC and Unicode lower-casing only for documents
that contain letters needing them), token boundaries come from a byte
classification, and every token's 64-bit hash comes from one prefix sum (a
polynomial hash, ``token_hash`` is its scalar reference). A shingle's hash folds
its tokens' hashes (``combine_token_hashes``).

The permutations are datasketch's default ``affine32`` scheme (datasketch >= 2.0):
``fmix32(h) * a_k + b_k mod 2**32`` with ``(a, b)`` drawn from
``RandomState(seed)`` exactly as datasketch draws them, so a signature equals
``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash)`` fed the same
shingles (``python_shingles``); ``tests/test_minhash.py`` proves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_HASH = np.uint32(0xFFFFFFFF)
_FNV_PRIME32 = np.uint32(0x01000193)
_FNV_PRIME64 = np.uint64(0x100000001B3)
#: Characters of Chinese and Japanese: text dominated by them is shingled by characters.


def fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix), element-wise on uint32."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def fmix64(values: np.ndarray) -> np.ndarray:
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> np.uint64(33))
    values = values * np.uint64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> np.uint64(33))


@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters ``(a, b)``: same RandomState draws."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def combine_token_hashes(hashes: list[int]) -> int:
    """A shingle's hash from its tokens' hashes (FNV-style fold, uint32): the scalar reference."""
    value = 0
    for token in hashes:
        value = ((value * 0x01000193) & 0xFFFFFFFF) ^ token
    return value


def shingle_hash(shingle: tuple[str, ...]) -> int:
    """The ``hashfunc`` to give datasketch for the same values as ``signatures``."""
    return combine_token_hashes([token_hash(token) for token in shingle])


def python_shingles(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """Reference shingling: n-grams of ``tokens``; a text shorter than n is one shingle."""
    if not tokens:
        return []
    return [tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1))]


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimizing weighted false-positive and false-negative areas, as datasketch's ``_optimal_param``."""
    best, best_error = (1, 1), float("inf")
    grid_low = np.linspace(0.0, threshold, 2001)
    grid_high = np.linspace(threshold, 1.0, 2001)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = np.trapezoid(1 - (1 - grid_low**rows) ** bands, grid_low)
            fn = np.trapezoid((1 - grid_high**rows) ** bands, grid_high)
            error = fp * fp_weight + fn * fn_weight
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def is_cjk(texts: pa.ChunkedArray | pa.Array, langs: pa.ChunkedArray | pa.Array | None, min_ratio: float) -> np.ndarray:
    """Which documents get character shingles: ``lang`` zh/ja when known, else the share of CJK characters.

    The share is counted on UTF-8 bytes: characters U+3000..U+9FFF (CJK punctuation,
    kana, unified ideographs) are the ones whose lead byte is 0xE3..0xE9.
    """
    data, offsets = utf8_buffer(pc.fill_null(texts, ""))
    lead = (data < 0x80) | (data >= 0xC0)
    cjk = _per_doc_count((data >= 0xE3) & (data <= 0xE9), offsets)
    chars = _per_doc_count(lead, offsets)
    by_script = cjk >= min_ratio * np.maximum(chars, 1)
    if langs is None:
        return by_script
    base = pc.utf8_lower(pc.fill_null(pc.cast(langs, pa.string()), ""))
    by_lang = pc.or_(pc.starts_with(base, "zh"), pc.starts_with(base, "ja")).to_numpy(zero_copy_only=False)
    known = pc.not_equal(base, "").to_numpy(zero_copy_only=False)
    return np.where(known, by_lang, by_script)


def utf8_buffer(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a non-null string array and each document's [start, end) offsets into them."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = texts.cast(pa.large_string())
    if len(texts) == 0:
        return np.zeros(0, np.uint8), np.zeros(1, np.int64)
    _, offset_buffer, data_buffer = texts.buffers()
    offsets = np.frombuffer(offset_buffer, np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return data[offsets[0] : offsets[-1]], offsets - offsets[0]


def _per_doc_count(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.diff(np.searchsorted(np.flatnonzero(mask), offsets))


def normalize(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Lower-cased UTF-8 bytes; NFKC and full Unicode lower-casing only for documents that need them.

    Documents with bytes of Latin-1/Latin Extended/Greek/Cyrillic letters (lead 0xC3..0xD5)
    or compatibility forms (lead 0xEF: full-width letters, ligatures) go through
    Arrow's NFKC + lower; the rest only need ASCII lower-casing, done on the bytes.
    """
    texts = pc.fill_null(texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts, "")
    data, offsets = utf8_buffer(texts)
    special = _per_doc_count(((data >= 0xC3) & (data <= 0xD5)) | (data == 0xEF), offsets) > 0
    if special.any():
        rows = pa.array(np.flatnonzero(special))
        fixed = pc.utf8_lower(pc.utf8_normalize(texts.take(rows), "NFKC"))
        texts = pc.replace_with_mask(texts, pa.array(special), fixed)
        data, offsets = utf8_buffer(texts)
    return _ascii_lower(data), offsets


def _ascii_lower(data: np.ndarray) -> np.ndarray:
    """A copy with ASCII letters lower-cased (byte arithmetic: no masked assignment)."""
    upper = (data - np.uint8(0x41)) < np.uint8(26)
    return data + (upper.view(np.uint8) << np.uint8(5))


def _token_bytes(data: np.ndarray) -> np.ndarray:
    """Bytes that belong to tokens: ASCII letters/digits and non-ASCII characters outside punctuation blocks.

    Separators among non-ASCII: U+0080..U+00BF (NBSP, Latin-1 punctuation), U+2000..U+2FFF
    (general punctuation, symbols, arrows, box drawing), U+3000..U+303F (CJK punctuation),
    U+FEFF (BOM), U+FF00..U+FF3F (full-width forms, left only where NFKC did not run) and U+1F000+ (emoji).
    """
    token = ((data >= 0x30) & (data <= 0x39)) | ((data >= 0x61) & (data <= 0x7A)) | (data >= 0x80)
    # Lead bytes of separator blocks are rare: find them all in one pass, then test their next byte.
    at = np.flatnonzero((data == 0xC2) | (data == 0xE2) | (data == 0xE3) | (data == 0xEF) | (data == 0xF0))
    lead = data[at]
    nxt = data[np.minimum(at + 1, data.size - 1)]
    separator = ((lead == 0xC2) | (lead == 0xE2) | ((lead == 0xE3) & (nxt == 0x80))
                 | ((lead == 0xEF) & ((nxt == 0xBB) | (nxt == 0xBC))) | ((lead == 0xF0) & (nxt == 0x9F)))
    at, lead = at[separator], lead[separator]
    width = np.where(lead == 0xC2, 2, np.where(lead == 0xF0, 4, 3))
    for k in range(4):
        token[np.minimum(at[width > k] + k, data.size - 1)] = False
    return token


@dataclass
class Tokens:
    """Tokens of a batch, flattened: document d owns ``[offsets[d], offsets[d+1])``.

    ``hashes`` are 64-bit; a token's bytes are ``data[starts[i]:ends[i]]``.
    """

    hashes: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    data: np.ndarray

    def strings(self, doc: int) -> list[str]:
        lo, hi = self.offsets[doc], self.offsets[doc + 1]
        return [bytes(self.data[s:e]).decode("utf-8") for s, e in zip(self.starts[lo:hi], self.ends[lo:hi])]


_POWERS: dict[str, np.ndarray] = {}
_POLY = 0x100000001B3
_POLY_INVERSE = pow(_POLY, -1, 1 << 64)


def _powers(base: int, count: int, name: str) -> np.ndarray:
    cached = _POWERS.get(name)
    if cached is None or cached.size < count:
        size = max(count, 1 << 17, 0 if cached is None else 2 * cached.size)
        cached = np.full(size, base, np.uint64)
        cached[0] = 1
        np.multiply.accumulate(cached, out=cached)
        _POWERS[name] = cached
    return cached[:count]


#: Span hashes run over windows of about this many bytes: their prefix sums and powers stay in cache,
#: and no array the size of the batch is allocated (fresh memory is what costs most on small VMs).
SPAN_WINDOW = 1 << 16


def _span_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of every byte span: fmix64 of the polynomial sum(byte_j * P**j) mod 2**64.

    Per window of spans: one prefix sum of byte_i * P**i (i from the window's first byte), a span's
    polynomial being the difference of two prefix values times P**-start (P is odd, so invertible
    mod 2**64). The value does not depend on where the window starts, so windows change nothing.
    """
    out = np.empty(starts.size, np.uint64)
    if starts.size == 0:
        return out
    cuts = np.searchsorted(starts, np.arange(int(starts[0]), int(ends[-1]), SPAN_WINDOW)[1:])
    bounds = np.unique(np.concatenate([[0], cuts, [starts.size]]))
    buffer = np.empty(0, np.uint64)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        origin, stop = int(starts[lo]), int(ends[hi - 1])
        width = stop - origin
        if buffer.size < width + 1:
            buffer = np.empty(max(width + 1, SPAN_WINDOW * 2), np.uint64)
        prefix = buffer[: width + 1]
        prefix[0] = 0
        prefix[1:] = data[origin:stop]
        prefix[1:] *= _powers(_POLY, width, "p")
        np.cumsum(prefix[1:], out=prefix[1:])
        s, e = starts[lo:hi] - origin, ends[lo:hi] - origin
        poly = out[lo:hi]
        np.subtract(prefix[e], prefix[s], out=poly)
        poly *= _powers(_POLY_INVERSE, width, "q")[s]
    return _fmix64_inplace(out)


def _fmix64_inplace(values: np.ndarray) -> np.ndarray:
    """``fmix64`` overwriting ``values`` (one temporary instead of six)."""
    shifted = np.empty_like(values)
    for multiplier in (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53), None):
        np.right_shift(values, np.uint64(33), out=shifted)
        values ^= shifted
        if multiplier is not None:
            values *= multiplier
    return values


def tokenize(data: np.ndarray, offsets: np.ndarray, chars: np.ndarray) -> Tokens:
    """Tokens of every document in one pass: word tokens (runs of token bytes), or, for the
    documents where ``chars`` is set, one token per non-separator character.

    Token starts and ends come from byte masks over the whole batch, so the tokens come out
    in document order whatever each document's kind: no per-kind copies, no merge.
    """
    size = data.size
    if size == 0:
        return Tokens(np.zeros(0, np.uint64), np.zeros(offsets.size, np.int64), np.zeros(0, np.int64),
                      np.zeros(0, np.int64), data)
    token = _token_bytes(data)
    lengths = np.diff(offsets)
    lead = (data < 0x80) | (data >= 0xC0)
    by_char = np.repeat(chars, lengths) & lead if chars.any() else None
    # A token starts at a token byte after a non-token byte or at a document's start (or, for
    # character tokens, at any character's first byte); it ends before the mirror of that.
    cut_before = np.ones(size, bool)
    np.logical_not(token[:-1], out=cut_before[1:])
    cut_before[offsets[:-1][lengths > 0]] = True
    cut_after = np.ones(size, bool)
    np.logical_not(token[1:], out=cut_after[:-1])
    cut_after[offsets[1:][lengths > 0] - 1] = True
    if by_char is not None:
        cut_before |= by_char
        # the byte before a character token's first byte is the end of the previous character
        cut_after[:-1] |= by_char[1:]
    starts = np.flatnonzero(token & cut_before)
    ends = np.flatnonzero(token & cut_after)
    ends += 1
    token_offsets = np.searchsorted(starts, offsets, side="left")
    return Tokens(_span_hashes(data, starts, ends), token_offsets, starts, ends, data)


def token_hash(token: str) -> int:
    """Scalar reference of a token's hash (the high 32 bits of ``_span_hashes``)."""
    value, power = 0, 1
    for byte in token.encode("utf-8"):
        value = (value + byte * power) & 0xFFFFFFFFFFFFFFFF
        power = (power * _POLY) & 0xFFFFFFFFFFFFFFFF
    return int(fmix64(np.array([value], np.uint64))[0] >> np.uint64(32))


def exact_keys(tokens: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit key per document over its token sequence (order-sensitive); and which documents have tokens."""
    counts = np.diff(tokens.offsets)
    position = np.arange(tokens.hashes.size, dtype=np.uint64) - np.repeat(tokens.offsets[:-1], counts).astype(np.uint64)
    mixed = fmix64(tokens.hashes ^ (position * np.uint64(0x9E3779B97F4A7C15)))
    running = np.zeros(mixed.size + 1, np.uint64)
    np.cumsum(mixed, out=running[1:])
    keys = running[tokens.offsets[1:]] - running[tokens.offsets[:-1]]
    return fmix64(keys ^ counts.astype(np.uint64)), counts > 0


@dataclass
class TokenHashes:
    """32-bit hashes of a batch, flattened: document d owns ``hashes[offsets[d]:offsets[d+1]]``."""

    hashes: np.ndarray  # uint32
    offsets: np.ndarray  # int64, len = docs + 1


def token_hashes32(tokens: Tokens) -> TokenHashes:
    return TokenHashes((tokens.hashes >> np.uint64(32)).astype(np.uint32), tokens.offsets)


def shingle_hashes(tokens: TokenHashes, n: int | np.ndarray) -> TokenHashes:
    """Hashes of every n-gram of every document (a short document is one shingle of all its tokens).

    ``n`` is one width or one per document. Every position folds the n tokens from it (crossing
    into the next document where it runs past its own end); the positions that do so are then
    dropped, and a document shorter than n gets the fold of all its tokens instead.
    """
    hashes, offsets = tokens.hashes, tokens.offsets
    counts = np.diff(offsets)
    docs = counts.size
    widths = np.broadcast_to(np.asarray(n, np.int64), (docs,))
    total = hashes.size
    if total == 0:
        return TokenHashes(np.zeros(0, np.uint32), np.zeros(docs + 1, np.int64))
    widest = int(widths.max())
    uniform = widest == int(widths.min())
    per_token = None if uniform else np.repeat(widths, counts)
    padded = np.zeros(total + widest, np.uint32)
    padded[:total] = hashes
    value = hashes.copy()
    for j in range(1, widest):
        folded = value * _FNV_PRIME32
        folded ^= padded[j : j + total]
        value = folded if uniform else np.where(j < per_token, folded, value)
    # Keep positions whose n-gram lies inside the document: all but each document's last n-1.
    keep = np.ones(total, bool)
    for j in range(1, widest):
        tail = offsets[1:] - j
        hit = (counts >= j) & (j < widths)
        keep[tail[hit]] = False
    # Documents shorter than their n: one shingle, the fold of all their tokens, at their first position.
    short = np.flatnonzero((counts > 0) & (counts < widths))
    if short.size:
        first, length = offsets[short], counts[short]
        fold = hashes[first].copy()
        for j in range(1, int(length.max())):
            more = j < length
            fold = np.where(more, (fold * _FNV_PRIME32) ^ hashes[np.minimum(first + j, total - 1)], fold)
        value[first] = fold
        keep[first] = True
    shingle_counts = np.where(counts >= widths, counts - widths + 1, np.minimum(counts, 1))
    new_offsets = np.zeros(docs + 1, np.int64)
    np.cumsum(shingle_counts, out=new_offsets[1:])
    return TokenHashes(value[keep], new_offsets)


def batch_tokens(texts: pa.Array, cjk: np.ndarray) -> Tokens:
    """Normalized tokens of a batch: words, or characters for the documents where ``cjk`` (input order)."""
    data, offsets = normalize(texts)
    return tokenize(data, offsets, np.asarray(cjk, bool))


def batch_shingles(texts: pa.Array, cjk: np.ndarray, word_ngram: int, char_ngram: int) -> TokenHashes:
    """Shingle hashes for a batch: word n-grams, or character n-grams where ``cjk``."""
    return shingles_of(batch_tokens(texts, cjk), cjk, word_ngram, char_ngram)


def shingles_of(tokens: Tokens, cjk: np.ndarray, word_ngram: int, char_ngram: int) -> TokenHashes:
    widths = word_ngram if word_ngram == char_ngram else np.where(cjk, char_ngram, word_ngram)
    return shingle_hashes(token_hashes32(tokens), widths)


def signatures(shingles: TokenHashes, num_perm: int, seed: int, chunk_rows: int = 8192) -> np.ndarray:
    """MinHash signatures (docs x num_perm, uint32); a document without shingles gets all MAX_HASH.

    Permutations run as a (num_perm x chunk_rows) block of shingles at a time, min-reduced
    per document along the contiguous axis; memory stays bounded whatever a document's size.
    """
    a, b = permutations(num_perm, seed)
    a_col, b_col = a[:, None], b[:, None]
    offsets = shingles.offsets
    docs = len(offsets) - 1
    out = np.full((num_perm, docs), MAX_HASH, np.uint32)
    mixed = fmix32(shingles.hashes)
    total = mixed.size
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    starts = offsets[nonempty]
    buffer = np.empty((num_perm, min(chunk_rows, max(total, 1))), np.uint32)
    for lo in range(0, total, chunk_rows):
        hi = min(lo + chunk_rows, total)
        block = buffer[:, : hi - lo]
        np.multiply(a_col, mixed[None, lo:hi], out=block)
        np.add(block, b_col, out=block)
        # Non-empty documents overlapping [lo, hi): the one already open at lo, then those starting inside.
        first = int(np.searchsorted(starts, lo, side="right")) - 1
        last = int(np.searchsorted(starts, hi, side="left"))
        touched = nonempty[max(first, 0) : last]
        segment = np.maximum(offsets[touched], lo) - lo
        out[:, touched] = np.minimum(out[:, touched], np.minimum.reduceat(block, segment, axis=1))
    return np.ascontiguousarray(out.T)


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 key per (document, band): a mix of the band's ``rows`` values and its index."""
    docs = signature.shape[0]
    view = signature[:, : bands * rows].reshape(docs, bands, rows).astype(np.uint64)
    keys = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15), (docs, bands)).copy()
    for j in range(rows):
        keys = (keys ^ view[:, :, j]) * _FNV_PRIME64
    return fmix64(keys)


def token_strings(texts: list[str] | pa.Array, cjk: np.ndarray | None = None, min_ratio: float = 0.3) -> list[list[str]]:
    """Each document's tokens as strings (the units ``batch_shingles`` hashes): for references and tests."""
    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    cjk = is_cjk(array, None, min_ratio) if cjk is None else cjk
    tokens = batch_tokens(array, cjk)
    return [tokens.strings(i) for i in range(len(array))]
