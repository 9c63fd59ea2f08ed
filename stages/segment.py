"""jieba's default cut (``jieba.lcut(text)``: accurate mode, HMM on), the same words at about twice the speed.

Why not jieba itself: Chinese word cutting was most of the rule stages' CPU time
(#16), and jieba spends it in per-character Python that does more than the
algorithm needs: a ``log`` per candidate word per character, a generator and
tuple ``max`` per character, and an HMM (Viterbi) that copies every path at
every step. Why not a port in C, C++ or Rust: the ones on PyPI (jieba_fast,
jieba-fast-dat, rjieba) cut differently: jieba_fast keeps at most 12 candidate
words per character and breaks ties the other way, rjieba keeps ``UDFy-38135539``
whole where jieba cuts it in three, and on the Chinese text of ../shared/data
they disagree with jieba on 8-28% of documents, which would change every
Chinese signal.

This module runs jieba's own algorithm on jieba's own dictionary and HMM tables,
reordered, not changed:

* route: one backward pass that finds each position's dictionary words and picks
  the best at once, with ``log(freq) - log(total)`` computed once per dictionary
  word (the same double jieba computes each time: ``log(f) - logtotal + route``
  is evaluated left to right there too, so every sum is bit-identical); ties go
  to the longer word, as jieba's ``max`` over ``(score, end)`` tuples does;
* HMM: Viterbi over the four states unrolled, back-pointers instead of copied
  paths, sums in jieba's order ``V + trans + emit``, ties to the greater state
  letter as jieba's tuple ``max``;
* memo: the cut of a block (a run of Han characters, letters, digits and
  ``+#&._%-``) and of an unknown run depends on that string alone, so repeated
  blocks (boilerplate, names, dates) are looked up (bounded).

``tests/test_rule_words.py`` checks the words equal ``jieba.lcut`` on the Chinese
text of ../shared/data and on edge cases (mixed scripts, numbers, spaces, ties).
"""

from __future__ import annotations

import functools
import logging
import math
import re

# jieba 0.42's block patterns (jieba/__init__.py and jieba/finalseg/__init__.py).
_RE_HAN = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+)", re.U)
_RE_SKIP = re.compile("(\r\n|\\s)", re.U)
_HMM_HAN = re.compile("([\u4E00-\u9FD5]+)")
_HMM_SKIP = re.compile("([a-zA-Z0-9]+(?:\\.\\d+)?%?)")

#: At most this many entries per memo, of blocks of at most this many characters (~30 MB at worst).
_MEMO_LIMIT = 200_000
_MEMO_MAX_CHARS = 64
_MISSING = object()
_SLOT = {"B": 0, "M": 1, "S": 2, "E": 3}


class ExactJieba:
    """``cut(text)`` equals ``list(jieba.dt.cut(text))`` (HMM on) for jieba's default dictionary."""

    def __init__(self, tokenizer, finalseg):
        tokenizer.check_initialized()
        self.freq: dict[str, int] = tokenizer.FREQ
        logtotal = math.log(tokenizer.total)
        self.neg_logtotal = 0.0 - logtotal  # log(1) - logtotal: a character jieba does not know
        # dictionary word -> its score; a prefix of words that is no word itself -> None
        self.score = {word: (math.log(f) - logtotal if f else None) for word, f in self.freq.items()}
        start, trans, emit = finalseg.start_P, finalseg.trans_P, finalseg.emit_P
        low = finalseg.MIN_FLOAT
        self.min_float = low
        self.start = {s: start[s] for s in "BMES"}
        self.trans = {(a, b): trans[a].get(b, low) for a in "BMES" for b in "BMES"}
        chars = set().union(*(emit[s] for s in "BMES"))
        #: character -> its emission log-probability in states B, M, S, E
        self.emit = {c: tuple(emit[s].get(c, low) for s in "BMSE") for c in chars}
        self.no_emit = (low, low, low, low)
        self.force_split = finalseg.Force_Split_Words
        self._blocks: dict[str, list[str]] = {}
        self._unknown: dict[str, list[str]] = {}

    # --- dictionary route ------------------------------------------------------------

    def _route(self, s: str) -> list[int]:
        """End index of the word that starts at each position (jieba's ``calc`` over ``get_DAG``)."""
        n = len(s)
        score, neg, missing = self.score, self.neg_logtotal, _MISSING
        best = [0.0] * (n + 1)
        end = [0] * (n + 1)
        for k in range(n - 1, -1, -1):
            found = False
            bv = 0.0
            bx = k
            i = k
            frag = s[k]
            while i < n:
                sc = score.get(frag, missing)
                if sc is missing:  # no dictionary word starts with frag
                    break
                if sc is not None:
                    v = sc + best[i + 1]
                    if not found or v >= bv:  # ties: the later end, as max over (score, end) tuples
                        bv, bx, found = v, i, True
                i += 1
                frag = s[k:i + 1]
            if not found:
                bv = neg + best[k + 1]
            best[k] = bv
            end[k] = bx
        return end

    def _cut_block(self, s: str) -> list[str]:
        """jieba's ``__cut_DAG``: dictionary words, runs of single characters through the HMM."""
        out: list[str] = []
        append = out.append
        end = self._route(s)
        freq = self.freq

        def flush(buf: str) -> None:  # a run of single characters: one, a dictionary word, or the HMM's
            if len(buf) == 1:
                append(buf)
            elif not freq.get(buf):
                out.extend(self._cut_unknown(buf))
            else:
                out.extend(buf)

        x, n, buf = 0, len(s), ""
        while x < n:
            y = end[x] + 1
            if y - x == 1:
                buf += s[x]
            else:
                if buf:
                    flush(buf)
                    buf = ""
                append(s[x:y])
            x = y
        if buf:
            flush(buf)
        return out

    # --- HMM for runs jieba's dictionary does not cover ----------------------------------

    def _viterbi(self, obs: str) -> str:
        """The state of each character, B/M/E/S (``finalseg.viterbi``)."""
        emit, none = self.emit, self.no_emit
        t = self.trans
        tEB, tSB, tMM, tBM, tSS, tES, tBE, tME = (t["E", "B"], t["S", "B"], t["M", "M"], t["B", "M"],
                                                  t["S", "S"], t["E", "S"], t["B", "E"], t["M", "E"])
        emB, emM, emS, emE = emit.get(obs[0], none)
        vB, vM, vS, vE = self.start["B"] + emB, self.start["M"] + emM, self.start["S"] + emS, self.start["E"] + emE
        back = []
        for c in obs[1:]:
            emB, emM, emS, emE = emit.get(c, none)
            a, b = vE + tEB + emB, vS + tSB + emB
            nB, pB = (a, "E") if a > b else (b, "S")
            a, b = vM + tMM + emM, vB + tBM + emM
            nM, pM = (b, "B") if b > a else (a, "M")
            a, b = vS + tSS + emS, vE + tES + emS
            nS, pS = (b, "E") if b > a else (a, "S")
            a, b = vB + tBE + emE, vM + tME + emE
            nE, pE = (a, "B") if a > b else (b, "M")
            vB, vM, vS, vE = nB, nM, nS, nE
            back.append((pB, pM, pS, pE))
        state = "E" if vE > vS else "S"
        states = [state]
        slot = _SLOT
        for pointers in reversed(back):
            state = pointers[slot[state]]
            states.append(state)
        return "".join(reversed(states))

    def _hmm_words(self, s: str) -> list[str]:
        states = self._viterbi(s)
        out: list[str] = []
        begin = nexti = 0
        for i, pos in enumerate(states):
            if pos == "B":
                begin = i
            elif pos == "E":
                out.append(s[begin:i + 1])
                nexti = i + 1
            elif pos == "S":
                out.append(s[i])
                nexti = i + 1
        if nexti < len(s):
            out.append(s[nexti:])
        return out

    def _cut_unknown(self, s: str) -> list[str]:
        """``finalseg.cut``: Han runs through the HMM, letters and numbers whole, the rest per piece."""
        found = self._unknown.get(s)
        if found is not None:
            return found
        out: list[str] = []
        for blk in _HMM_HAN.split(s):
            if _HMM_HAN.match(blk):
                for word in self._hmm_words(blk):
                    if word in self.force_split:
                        out += word
                    else:
                        out.append(word)
            else:
                out += [x for x in _HMM_SKIP.split(blk) if x]
        if len(s) <= _MEMO_MAX_CHARS:
            if len(self._unknown) >= _MEMO_LIMIT:
                self._unknown.clear()
            self._unknown[s] = out
        return out

    # --- whole text ----------------------------------------------------------------------

    def cut(self, text: str) -> list[str]:
        """The words of ``text``, whitespace tokens included, as ``jieba.lcut(text)``."""
        out: list[str] = []
        blocks = self._blocks
        for blk in _RE_HAN.split(text):
            if not blk:
                continue
            if _RE_HAN.match(blk):
                words = blocks.get(blk)
                if words is None:
                    words = self._cut_block(blk)
                    if len(blk) <= _MEMO_MAX_CHARS:  # long blocks seldom repeat: the memo stays small
                        if len(blocks) >= _MEMO_LIMIT:
                            blocks.clear()
                        blocks[blk] = words
                out += words
            else:
                for x in _RE_SKIP.split(blk):
                    if _RE_SKIP.match(x):
                        out.append(x)
                    else:
                        out += x
        return out

    def clear(self) -> None:
        self._blocks.clear()
        self._unknown.clear()


@functools.lru_cache(maxsize=1)
def exact_jieba() -> ExactJieba:
    """The cutter over jieba's default dictionary, loaded once per process (about two seconds)."""
    import jieba
    from jieba import finalseg

    jieba.setLogLevel(logging.WARNING)
    return ExactJieba(jieba.dt, finalseg)
