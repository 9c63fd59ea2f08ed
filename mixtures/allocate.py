"""How many samples each component gets, and which component each sample comes from.

Three rules, each a few lines a user can redo by hand:

* **Temperature** (mT5, XLM-R): weight_c ∝ tokens_c^(1/T). T = 1 is proportional to size,
  larger T flattens towards uniform.
* **Caps** (UniMax): a component may give at most ``max_epochs × tokens available``. Its
  target is cut to that cap and the budget it cannot take is shared among the components
  with room, in proportion to their weights, until no target exceeds its cap (with equal
  weights this is UniMax's uniform redistribution). A budget that even every cap together
  cannot fill is an error.
* **Order** (Megatron's ``BlendedDataset``): sample i goes to the component furthest below
  its share, ``argmax_c (w_c · (i + 1) − n_c)`` with n_c the samples it already has (ties:
  the first component). No random numbers; after every prefix each component's count is
  within one sample of ``w_c × prefix``.
"""

from __future__ import annotations

import numpy as np


class BudgetError(ValueError):
    """The budget cannot be drawn under the caps."""


def temperature_weights(tokens: np.ndarray, temperature: float) -> np.ndarray:
    """Weights ∝ tokens^(1/T), computed in log space so that large counts and large 1/T do not overflow."""
    logs = np.log(np.asarray(tokens, dtype=np.float64)) / temperature
    scaled = np.exp(logs - logs.max())
    return scaled / scaled.sum()


def cap_targets(weights: np.ndarray, budget: float, caps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token targets per component under the caps: (targets, capped mask). Raises BudgetError if infeasible."""
    weights = np.asarray(weights, dtype=np.float64)
    caps = np.asarray(caps, dtype=np.float64)
    if budget > caps.sum() * (1 + 1e-12):
        raise BudgetError(f"the budget of {budget:,.0f} tokens is more than every component can give under its "
                          f"max_epochs ({caps.sum():,.0f} tokens in all)")
    capped = np.zeros(len(weights), dtype=bool)
    targets = np.zeros(len(weights))
    while True:
        room = ~capped
        left = budget - caps[capped].sum()
        share = np.where(room, weights, 0.0)
        targets = np.where(capped, caps, left * share / share[room].sum() if room.any() else 0.0)
        over = room & (targets > caps)
        if not over.any():
            return targets, capped
        capped |= over


def blend(weights: np.ndarray, samples: int) -> np.ndarray:
    """Megatron's greedy order: the component of each of ``samples`` samples (uint16).

    The rule is sequential by nature (each choice depends on all earlier ones), so this
    is a plain loop over samples with the components' errors in Python floats; about
    0.1 µs per sample and component on one core.
    """
    w = [float(x) for x in weights]
    n = [0] * len(w)
    out = np.empty(samples, dtype=np.uint16)
    if len(w) == 1:
        out[:] = 0
        return out
    choice = bytearray(samples) if len(w) <= 255 else None
    components = range(1, len(w))
    for i in range(samples):
        t = i + 1
        best, error = 0, w[0] * t - n[0]
        for c in components:
            e = w[c] * t - n[c]
            if e > error:
                best, error = c, e
        n[best] += 1
        if choice is not None:
            choice[i] = best
        else:
            out[i] = best
    if choice is not None:
        out[:] = np.frombuffer(bytes(choice), dtype=np.uint8)
    return out


def within_component(components: np.ndarray, count: int) -> np.ndarray:
    """For each sample, how many earlier samples came from its component (its index in that component)."""
    out = np.empty(len(components), dtype=np.int64)
    for c in range(count):
        rows = np.flatnonzero(components == c)
        out[rows] = np.arange(len(rows), dtype=np.int64)
    return out
