"""MinHash signatures: equal to datasketch's on the same shingles, bands x rows as datasketch picks them."""

from __future__ import annotations

import json
import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from curate.stages import minhash as mh


def _english_paragraphs(shared_data, count: int) -> list[str]:
    text = (shared_data / "books" / "gutenberg" / "pg1342-0.txt").read_text(encoding="utf-8-sig")
    return [p for p in text.split("\n\n") if len(p) > 200][:count]


def _chinese_paragraphs(shared_data, count: int) -> list[str]:
    path = shared_data / "chinese" / "cmrc2018-wikipedia" / "paragraphs.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()[:count]]


@pytest.mark.parametrize(("num_perm", "seed", "n"), [(128, 1, 5), (256, 42, 3)])
def test_signatures_equal_datasketch(shared_data, num_perm, seed, n):
    texts = _english_paragraphs(shared_data, 25) + _chinese_paragraphs(shared_data, 25)
    texts += ["", "   ", "!!! ???", "two words", "短文", "Mixed 中文 and English words here"]
    array = pa.array(texts)
    cjk = mh.is_cjk(array, None, 0.3)
    shingles = mh.batch_shingles(array, cjk, n, n)
    signature = mh.signatures(shingles, num_perm, seed, chunk_rows=97)  # documents span chunks
    assert signature.shape == (len(texts), num_perm) and signature.dtype == np.uint32
    tokens = mh.token_strings(array, cjk)
    for row, text in enumerate(texts):
        reference = mh.python_shingles(tokens[row], n)
        assert np.diff(shingles.offsets)[row] == len(reference)
        expected = MinHash(num_perm=num_perm, seed=seed, hashfunc=mh.shingle_hash)
        expected.update_batch(reference)
        assert np.array_equal(signature[row], expected.hashvalues), f"row {row}: {text[:40]!r}"
    assert (signature[texts.index("")] == mh.MAX_HASH).all()


def test_chinese_gets_character_shingles_english_word_shingles(shared_data):
    zh, en = _chinese_paragraphs(shared_data, 1)[0], _english_paragraphs(shared_data, 1)[0]
    by_script = mh.is_cjk(pa.array([zh, en]), None, 0.3)
    assert by_script.tolist() == [True, False]
    # A known language wins over the script guess; an unknown one falls back to it.
    by_lang = mh.is_cjk(pa.array([zh, en, zh]), pa.array(["en", "ja", None]), 0.3)
    assert by_lang.tolist() == [False, True, True]
    shingles = mh.batch_shingles(pa.array([zh]), np.array([True]), 5, 5)
    assert np.diff(shingles.offsets)[0] == len(mh.token_strings([zh])[0]) - 4


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.5, 128), (0.7, 128), (0.8, 128), (0.9, 128), (0.8, 64)])
def test_optimal_bands_match_datasketch(threshold, num_perm):
    assert mh.optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_band_keys_collide_exactly_on_equal_bands():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, 128), dtype=np.uint64).astype(np.uint32)
    sig[1, :13] = sig[0, :13]  # same first band only
    sig[2] = sig[0, np.r_[13:26, 0:13, 26:128]]  # same values, other bands
    keys = mh.band_keys(sig, 9, 13)
    assert keys.shape == (3, 9) and keys.dtype == np.uint64
    assert keys[0, 0] == keys[1, 0]
    assert not np.isin(keys[1, 1:], keys[0]).any()
    assert keys[2, 1] != keys[0, 0] and keys[2, 0] != keys[0, 1]  # the band index is part of the key


def test_signature_agreement_estimates_jaccard(shared_data):
    base = " ".join(_english_paragraphs(shared_data, 40))
    words = base.split()
    rng = np.random.default_rng(7)
    variants = [base]
    for rate in (0.02, 0.05, 0.1, 0.3):
        edited = [w if rng.random() > rate else "zzq" + w for w in words]
        variants.append(" ".join(edited))
    array = pa.array(variants)
    signature = mh.signatures(mh.batch_shingles(array, np.zeros(len(variants), bool), 5, 5), 256, 1)
    sets = [set(mh.python_shingles(tokens, 5)) for tokens in mh.token_strings(variants)]
    for i in range(1, len(variants)):
        true = len(sets[0] & sets[i]) / len(sets[0] | sets[i])
        estimate = float((signature[0] == signature[i]).mean())
        assert abs(true - estimate) < 0.08, (true, estimate)


def test_tokens_match_unicode_regex_reference(shared_data):
    english = _english_paragraphs(shared_data, 300)
    for text, tokens in zip(english, mh.token_strings(english)):
        assert tokens == re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower())
    chinese = _chinese_paragraphs(shared_data, 100)
    agree = 0
    for text, tokens in zip(chinese, mh.token_strings(chinese)):
        norm = unicodedata.normalize("NFKC", text).lower()
        agree += tokens == [c for c in norm if unicodedata.category(c)[0] not in "ZPSC"]
    assert agree >= 95  # a few symbols (×, ・) are tokens here, not in the Unicode categories
    mixed = mh.token_strings(["Ｆｕｌｌ　width ÉCOLE Straße “quoted” don’t 🙂x—y", "中文，标点。ＡＢＣ"])
    assert mixed == [["full", "width", "école", "straße", "quoted", "don", "t", "x", "y"], ["中", "文", "标", "点", "a", "b", "c"]]


def test_exact_keys_ignore_case_punctuation_whitespace_not_order():
    texts = ["The cat, sat.", "the  CAT sat!!", "sat the cat", "", "...", "猫坐着。", "猫 坐 着"]
    array = pa.array(texts)
    cjk = mh.is_cjk(array, None, 0.3)
    keys, present = mh.exact_keys(mh.batch_tokens(array, cjk))
    assert present.tolist() == [True, True, True, False, False, True, True]
    assert keys[0] == keys[1] and keys[0] != keys[2] and keys[5] == keys[6]


def test_token_hash_reference_matches_vectorized():
    texts = ["alpha beta gamma", "école 中文"]
    array = pa.array(texts)
    vectorized = mh.token_hashes32(mh.batch_tokens(array, np.zeros(2, bool))).hashes.tolist()
    assert vectorized == [mh.token_hash(t) for doc in mh.token_strings(array, np.zeros(2, bool)) for t in doc]


# ---------------------------------------------------------------- a per-document reference in plain Python

#: Non-ASCII separators, by code point (what ``_token_bytes`` finds from UTF-8 lead and next bytes).
_SEPARATORS = ((0x80, 0xBF), (0x2000, 0x2FFF), (0x3000, 0x303F), (0xFEC0, 0xFEFF), (0xFF00, 0xFF3F), (0x1F000, 0x1FFFF))


def _reference_tokens(text: str, min_ratio: float = 0.3) -> tuple[list[str], bool]:
    """One document, character by character: (its tokens, whether it takes character tokens)."""
    cjk = sum("\u3000" <= c <= "\u9fff" for c in text) >= min_ratio * max(len(text), 1)
    if any("\u00c0" <= c <= "\u057f" or "\uf000" <= c <= "\uffff" for c in text):  # UTF-8 lead 0xC3..0xD5 or 0xEF
        text = pc.utf8_lower(pc.utf8_normalize(pa.array([text]), "NFKC"))[0].as_py()
    else:
        text = "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)

    def is_token(c: str) -> bool:
        if c < "\x80":
            return c.isascii() and c.isalnum()
        return not any(lo <= ord(c) <= hi for lo, hi in _SEPARATORS)

    if cjk:
        return [c for c in text if is_token(c)], True
    tokens, word = [], ""
    for c in text:
        if is_token(c):
            word += c
        elif word:
            tokens.append(word)
            word = ""
    return tokens + ([word] if word else []), False


def _fmix64(value: int) -> int:
    mask = (1 << 64) - 1
    for shift, multiplier in ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53), (33, None)):
        value ^= value >> shift
        if multiplier:
            value = (value * multiplier) & mask
    return value


def _reference_exact_key(tokens: list[str]) -> int:
    mask = (1 << 64) - 1
    total = 0
    for position, token in enumerate(tokens):
        full = (mh.token_hash(token) << 32) | _low32(token)
        total = (total + _fmix64(full ^ ((position * 0x9E3779B97F4A7C15) & mask))) & mask
    return _fmix64(total ^ len(tokens))


def _low32(token: str) -> int:
    value, power, mask = 0, 1, (1 << 64) - 1
    for byte in token.encode("utf-8"):
        value, power = (value + byte * power) & mask, (power * 0x100000001B3) & mask
    return _fmix64(value) & 0xFFFFFFFF


def test_batch_path_equals_a_per_document_reference_on_real_text(shared_data):
    """Tokens, exact keys and signatures of a whole batch (Arrow and numpy over all documents at once)
    equal what a plain per-document loop computes: characters classified one by one, n-grams of
    strings, datasketch's MinHash fed them. Real text in many scripts: English books, Chinese
    Wikipedia, web articles with typographic quotes, and sentences in 30 languages (Greek, Cyrillic,
    Arabic, Devanagari, Japanese, Korean, Vietnamese with combining marks...)."""
    lingua = shared_data / "langid" / "lingua" / "sentences"
    texts = _english_paragraphs(shared_data, 20) + _chinese_paragraphs(shared_data, 20)
    articles = json.loads((shared_data / "html_extraction" / "scrapinghub-article-extraction-benchmark"
                           / "ground-truth.json").read_text(encoding="utf-8"))
    texts += [a["articleBody"] for a in list(articles.values())[:15]]
    for lang in ("el", "ru", "ar", "hi", "ja", "ko", "vi", "de", "tr", "he", "th", "uk", "fr", "pl", "ka",
                 "hy", "bn", "ta", "fa", "zh", "cs", "is", "lt", "mn", "ur", "yo", "pt", "es", "sr", "kk"):
        lines = (lingua / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        texts += [" ".join(lines[:12]), " ".join(lines[12:14])]
    texts += ["", "Ab", "中文", "ＡＢＣ full-width", "e\u0301cole =\u0338 \ufb01ne \u2460"]
    array = pa.array(texts)
    cjk = mh.is_cjk(array, None, 0.3)
    tokens = mh.batch_tokens(array, cjk)
    keys, present = mh.exact_keys(tokens)
    shingles = mh.batch_shingles(array, cjk, 5, 5)
    signature = mh.signatures(shingles, 128, 1)
    for row, text in enumerate(texts):
        expected, chars = _reference_tokens(text)
        assert bool(cjk[row]) == chars, row
        assert tokens.strings(row) == expected, f"row {row}: {text[:60]!r}"
        assert bool(present[row]) == bool(expected)
        if expected:
            assert int(keys[row]) == _reference_exact_key(expected), row
        reference = MinHash(num_perm=128, seed=1, hashfunc=mh.shingle_hash)
        reference.update_batch(mh.python_shingles(expected, 5))
        assert np.array_equal(signature[row], reference.hashvalues), f"row {row}: {text[:60]!r}"
