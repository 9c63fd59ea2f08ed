"""Which mixture is better, with how much certainty: differences, intervals and one-line verdicts.

An ablation scores every trained model on the same evaluation *units* (documents of an evaluation text,
or samples of a mixture's validation split): for each unit the summed token loss in nats, the number of
tokens predicted and the UTF-8 bytes they encode. From these:

- **loss** = Σ nats / Σ tokens (mean loss per token) and **bits per byte** = Σ nats / ln 2 / Σ bytes, which
  does not depend on how finely a tokenizer cuts the text, so tokenizers of different sizes can be compared.
- **delta** of a mixture = its loss minus the first mixture's, model by model paired by seed (same initial
  weights, same schedule), then averaged over seeds.
- **interval** (95 % by default): with two or more seeds, Student's t over the seeds' paired differences
  (what varies between reruns of the whole experiment). With one seed, a paired bootstrap over the units:
  units are drawn with replacement, the same draw for both models, and the delta recomputed (Efron &
  Tibshirani, percentile interval). It measures how much the answer depends on which texts were evaluated,
  not seed noise: say so, and prefer several seeds for a decision.

No scipy: Student's t quantiles for the usual confidence levels are a short table (below 30 degrees of
freedom; above, the normal quantile plus Cornish-Fisher's first terms, good to 1e-3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LN2 = math.log(2)


@dataclass
class Scores:
    """One model's scores on one evaluation set: per unit, summed loss (nats), tokens and bytes."""

    nats: np.ndarray
    tokens: np.ndarray
    bytes: np.ndarray

    @property
    def loss(self) -> float:
        return float(self.nats.sum() / self.tokens.sum())

    @property
    def bits_per_byte(self) -> float | None:
        total = int(self.bytes.sum())
        return float(self.nats.sum() / LN2 / total) if total else None


def _normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


#: Two-sided Student's t quantiles t_{(1+c)/2, df} for df = 1..30 (any statistics table).
_T_TABLE = {
    0.90: (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761, 1.753,
           1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699, 1.697),
    0.95: (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
           2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042),
    0.99: (63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012, 2.977, 2.947,
           2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779, 2.771, 2.763, 2.756, 2.750),
}
CONFIDENCE_LEVELS = tuple(_T_TABLE)


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student's t critical value for ``confidence`` (0.90, 0.95, 0.99) and ``df`` >= 1."""
    if confidence not in _T_TABLE:
        raise ValueError(f"confidence: one of {', '.join(map(str, CONFIDENCE_LEVELS))}, got {confidence}")
    if df < 1:
        raise ValueError("df: at least 1")
    if df <= 30:
        return _T_TABLE[confidence][df - 1]
    z = _normal_quantile((1 + confidence) / 2)
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean of two or more values."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("a t interval needs at least two values")
    mean = float(x.mean())
    half = t_quantile(confidence, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def paired_bootstrap(a: Scores, b: Scores, *, resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """(delta, low, high) of loss(b) − loss(a) over the same units, resampled together (percentile interval).

    ``a`` and ``b`` must be scores of the same units (same tokens per unit). The generator is seeded, so a
    rerun reports the same interval.
    """
    if len(a.tokens) != len(b.tokens) or not np.array_equal(a.tokens, b.tokens):
        raise ValueError("paired bootstrap: the two models were not scored on the same units")
    delta = b.loss - a.loss
    n = len(a.tokens)
    if n < 2 or resamples < 1:
        return delta, delta, delta
    rng = np.random.default_rng(seed)
    diff, tokens = (b.nats - a.nats).astype(np.float64), a.tokens.astype(np.float64)
    deltas = np.empty(resamples)
    chunk = max(1, 4_000_000 // n)  # bounded memory: chunk × n indices at a time
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        deltas[start:start + len(idx)] = diff[idx].sum(axis=1) / tokens[idx].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return delta, float(low), float(high)


def verdict(name: str, baseline: str, delta: float, low: float | None, high: float | None, loss_first: float,
            how: str) -> str:
    """One line: better, worse, or no clear difference, with the size of the difference and its interval."""
    if low is None or high is None:
        return f"{name}: {delta:+.4f} nats/token vs {baseline}; no interval ({how})"
    rel = f" ({delta / loss_first:+.1%})" if loss_first else ""
    interval = f"{delta:+.4f} nats/token{rel}, CI [{low:+.4f}, {high:+.4f}] {how}"
    if delta == 0 and low == 0 and high == 0:
        return f"{name}: the same loss as {baseline} {how}"
    if high < 0:
        return f"{name} is better than {baseline}: {interval}"
    if low > 0:
        return f"{name} is worse than {baseline}: {interval}"
    return f"{name}: no clear difference from {baseline}: {interval} spans 0"


def compare(scores: dict[str, dict[int, Scores]], *, confidence: float = 0.95, resamples: int = 2000,
            seed: int = 0) -> list[dict]:
    """Rows for one evaluation set: per mixture, one row per seed and one summary row (``seed`` None).

    ``scores[mixture][seed]``; the first mixture is the baseline. Per-seed rows carry the paired bootstrap
    over units for that seed; the summary row carries the t interval over seeds (two or more seeds) or the
    bootstrap (one seed), and the verdict.
    """
    names = list(scores)
    first = names[0]
    seeds = sorted(scores[first])
    level = f"{confidence:.0%}"
    rows = []
    for name in names:
        if sorted(scores[name]) != seeds:
            raise ValueError(f"{name}: seeds {sorted(scores[name])} differ from {first}'s {seeds}")
        per_seed = []
        for k in seeds:
            s, base = scores[name][k], scores[first][k]
            if name == first:
                delta, low, high = 0.0, None, None
            else:
                delta, low, high = paired_bootstrap(base, s, resamples=resamples, confidence=confidence, seed=seed)
            bpb, base_bpb = s.bits_per_byte, base.bits_per_byte
            per_seed.append(delta)
            rows.append({"mixture": name, "seed": k, "loss": s.loss, "loss_std": None, "bits_per_byte": bpb,
                         "delta_vs_first": delta,
                         "delta_bits_per_byte": None if bpb is None or base_bpb is None else bpb - base_bpb,
                         "ci_low": low, "ci_high": high,
                         "ci_method": None if name == first else f"{level} paired bootstrap over {len(s.tokens)} units",
                         "verdict": None, "units": int(len(s.tokens)), "tokens": int(s.tokens.sum()),
                         "bytes": int(s.bytes.sum())})
        seed_rows = rows[-len(seeds):]
        losses = [r["loss"] for r in seed_rows]
        bpbs = [r["bits_per_byte"] for r in seed_rows]
        summary = dict(seed_rows[0], seed=None, loss=float(np.mean(losses)),
                       loss_std=float(np.std(losses, ddof=1)) if len(losses) > 1 else None,
                       bits_per_byte=None if None in bpbs else float(np.mean(bpbs)),
                       delta_vs_first=float(np.mean(per_seed)))
        dbpb = [r["delta_bits_per_byte"] for r in seed_rows]
        summary["delta_bits_per_byte"] = None if None in dbpb else float(np.mean(dbpb))
        if name == first:
            summary.update(ci_low=None, ci_high=None, ci_method=None, verdict=f"{name}: the baseline")
        else:
            if len(seeds) > 1:
                _, low, high = t_interval(per_seed, confidence)
                how = f"({level} t interval over {len(seeds)} seeds)"
                method = f"{level} t interval over {len(seeds)} seeds"
            else:
                low, high = seed_rows[0]["ci_low"], seed_rows[0]["ci_high"]
                how = (f"({level} paired bootstrap over {seed_rows[0]['units']} units; one seed: seed-to-seed "
                       "variation not measured)")
                method = seed_rows[0]["ci_method"]
            summary.update(ci_low=low, ci_high=high, ci_method=method,
                           verdict=verdict(name, first, summary["delta_vs_first"], low, high, baseline_loss, how))
        if name == first:
            baseline_loss = summary["loss"]
        rows.append(summary)
    return rows
