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
    data = data.copy()
    upper = (data >= 0x41) & (data <= 0x5A)
    data[upper] += 0x20
    return data, offsets


def _token_bytes(data: np.ndarray) -> np.ndarray:
    """Bytes that belong to tokens: ASCII letters/digits and non-ASCII characters outside punctuation blocks.

    Separators among non-ASCII: U+0080..U+00BF (NBSP, Latin-1 punctuation), U+2000..U+2FFF
    (general punctuation, symbols, arrows, box drawing), U+3000..U+303F (CJK punctuation),
    U+FEFF (BOM), U+FF00..U+FF3F (full-width forms, left only where NFKC did not run) and U+1F000+ (emoji).
    """
    token = ((data >= 0x30) & (data <= 0x39)) | ((data >= 0x61) & (data <= 0x7A)) | (data >= 0x80)
    nxt = np.empty_like(data)
    nxt[:-1], nxt[-1:] = data[1:], 0
    for lead, test, width in (
        (0xC2, None, 2),
        (0xE2, None, 3),
        (0xE3, nxt == 0x80, 3),
        (0xEF, (nxt == 0xBB) | (nxt == 0xBC), 3),
        (0xF0, nxt == 0x9F, 4),
    ):
        hit = data == lead
        if test is not None:
            hit &= test
        at = np.flatnonzero(hit)
        for k in range(width):
            token[np.minimum(at + k, data.size - 1)] = False
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
        size = max(count, 1 << 20, 0 if cached is None else 2 * cached.size)
        cached = np.full(size, base, np.uint64)
        cached[0] = 1
        np.multiply.accumulate(cached, out=cached)
        _POWERS[name] = cached
    return cached[:count]


def _span_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of every byte span: fmix64 of the polynomial sum(byte_j * P**j) mod 2**64."""
    if starts.size == 0:
        return np.zeros(0, np.uint64)
    prefix = np.zeros(data.size + 1, np.uint64)
    np.cumsum(data.astype(np.uint64) * _powers(_POLY, data.size, "p"), out=prefix[1:])
    poly = (prefix[ends] - prefix[starts]) * _powers(_POLY_INVERSE, data.size, "q")[starts]
    return fmix64(poly)


def tokenize(data: np.ndarray, offsets: np.ndarray, chars: bool) -> Tokens:
    """Word tokens (runs of token bytes) or, with ``chars``, one token per non-separator character."""
    token = _token_bytes(data)
    docs = offsets.size - 1
    if chars:
        lead = np.flatnonzero((data < 0x80) | (data >= 0xC0))
        bounds = np.append(lead, data.size)
        keep = np.flatnonzero(token[lead])
        starts, ends = lead[keep], bounds[keep + 1]
    else:
        first = np.zeros(data.size, bool)
        first[offsets[:-1][offsets[:-1] < data.size]] = True
        last = np.zeros(data.size, bool)
        last[offsets[1:][offsets[1:] > 0] - 1] = True
        before = np.r_[False, token[:-1]] & ~first
        after = np.r_[token[1:], False] & ~last
        starts = np.flatnonzero(token & ~before)
        ends = np.flatnonzero(token & ~after) + 1
    owner = np.searchsorted(offsets, starts, side="right") - 1
    token_offsets = np.zeros(docs + 1, np.int64)
    np.cumsum(np.bincount(owner, minlength=docs), out=token_offsets[1:])
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


def shingle_hashes(tokens: TokenHashes, n: int) -> TokenHashes:
    """Hashes of every n-gram of every document (a short document is one shingle of all its tokens)."""
    hashes, offsets = tokens.hashes, tokens.offsets
    counts = np.diff(offsets)
    total = hashes.size
    if total == 0:
        return TokenHashes(np.zeros(0, np.uint32), np.zeros(len(counts) + 1, np.int64))
    doc_end = np.repeat(offsets[1:], counts)
    position = np.arange(total, dtype=np.int64)
    value = np.zeros(total, np.uint32)
    padded = np.concatenate([hashes, np.zeros(n, np.uint32)])
    for j in range(n):
        inside = position + j < doc_end
        folded = (value * _FNV_PRIME32) ^ padded[j : j + total]
        value = np.where(inside, folded, value)
    doc_start = np.repeat(offsets[:-1], counts)
    starts = (position + n <= doc_end) | (position == doc_start)
    shingle_counts = np.maximum(counts - n + 1, np.minimum(counts, 1))
    new_offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(shingle_counts, out=new_offsets[1:])
    return TokenHashes(value[starts], new_offsets)


def batch_tokens(texts: pa.Array, cjk: np.ndarray) -> tuple[Tokens, Tokens]:
    """Normalized word tokens of the non-CJK documents and character tokens of the CJK ones (in input order)."""
    data, offsets = normalize(texts)
    return _subset_tokens(data, offsets, ~cjk, chars=False), _subset_tokens(data, offsets, cjk, chars=True)


def _subset_tokens(data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, chars: bool) -> Tokens:
    """Tokens of every document, empty for documents outside ``rows``."""
    sizes = np.diff(offsets) * rows
    kept = np.repeat(rows, np.diff(offsets))
    sub_offsets = np.zeros(offsets.size, np.int64)
    np.cumsum(sizes, out=sub_offsets[1:])
    return tokenize(data[kept], sub_offsets, chars)


def merge_hashes(words: TokenHashes, chars: TokenHashes) -> TokenHashes:
    """Interleave per-document hashes of words and characters (each document has only one kind)."""
    counts = np.diff(words.offsets) + np.diff(chars.offsets)
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    out = np.empty(offsets[-1], words.hashes.dtype)
    for part in (words, chars):
        sizes = np.diff(part.offsets)
        dest = np.repeat(offsets[:-1] - part.offsets[:-1], sizes) + np.arange(part.hashes.size)
        out[dest] = part.hashes
    return TokenHashes(out, offsets)


def batch_shingles(texts: pa.Array, cjk: np.ndarray, word_ngram: int, char_ngram: int) -> TokenHashes:
    """Shingle hashes for a batch: word n-grams, or character n-grams where ``cjk``."""
    words, chars = batch_tokens(texts, cjk)
    return shingles_of(words, chars, word_ngram, char_ngram)


def shingles_of(words: Tokens, chars: Tokens, word_ngram: int, char_ngram: int) -> TokenHashes:
    word_sh = shingle_hashes(token_hashes32(words), word_ngram)
    char_sh = shingle_hashes(token_hashes32(chars), char_ngram)
    return merge_hashes(word_sh, char_sh)


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
    words, chars = batch_tokens(array, cjk)
    return [(chars if cjk[i] else words).strings(i) for i in range(len(array))]
