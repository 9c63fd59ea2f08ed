"""Score a trained run on an evaluation set: summed loss per unit, in windows of the model's ``seq_len``.

A unit (``evalsets.EvalSet``) is a token sequence whose first token is context only. It is cut into
windows that overlap by one token: window k feeds tokens ``[k·S, k·S + S)`` and predicts
``[k·S + 1, k·S + S + 1)``, so every token but the first is predicted exactly once, with up to ``S``
tokens of context, as in training (a training sample starts wherever the packing cut it). Windows of
all units are batched together; a short last window is padded at its end and the padding masked out
(attention is causal, so padding never changes the positions before it). Scores are float64 sums of
float32 per-token cross-entropies: the same model and the same set give the same numbers on every run.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from curate.trainer import checkpoint
from curate.trainer.evalsets import EvalSet
from curate.trainer.model import ModelArgs, Transformer


class EvalError(RuntimeError):
    """A run that cannot be evaluated (not finished, no checkpoint); the message names the folder."""


def final_checkpoint(run: str) -> tuple[int, str, dict]:
    """(step, folder, state) of a finished run's last checkpoint."""
    done = os.path.join(run, "done.json")
    if not os.path.isfile(done):
        raise EvalError(f"{run}: the run has not finished (no done.json)")
    found = checkpoint.list_checkpoints(run)
    if not found:
        raise EvalError(f"{run}: finished but holds no checkpoint to evaluate")
    step, folder = found[-1]
    try:
        state = checkpoint.read_state(folder)
    except checkpoint.CheckpointError as err:
        raise EvalError(str(err)) from None
    return step, folder, state


def load_model(run: str, device: torch.device) -> tuple[Transformer, int, dict]:
    """The model of a finished run's last checkpoint, in eval mode on ``device``; its seq_len; the state."""
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    step, folder, state = final_checkpoint(run)
    with torch.device("cpu"):
        model = Transformer(ModelArgs(**saved["model"]))
    try:
        model.load_state_dict(checkpoint.load_file(folder, "model.pt"))
    except checkpoint.CheckpointError as err:
        raise EvalError(str(err)) from None
    return model.to(device).eval(), int(saved["seq_len"]), {**state, "step": step}


def windows(evalset: EvalSet, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit, start, length) of every window: inputs ``flat[start:start+length]``, targets one further."""
    units, starts, lengths = [], [], []
    for i in range(len(evalset)):
        begin, end = int(evalset.offsets[i]), int(evalset.offsets[i + 1])
        predicted = end - begin - 1
        first = np.arange(0, predicted, seq_len)
        units.append(np.full(len(first), i))
        starts.append(begin + first)
        lengths.append(np.minimum(seq_len, predicted - first))
    if not units:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(units), np.concatenate(starts), np.concatenate(lengths)


@torch.no_grad()
def score(model: Transformer, evalset: EvalSet, seq_len: int, device: torch.device, batch: int = 16) -> np.ndarray:
    """Summed loss in nats of each unit's predicted tokens (float64, one per unit)."""
    unit, start, length = windows(evalset, seq_len)
    nats = np.zeros(len(evalset), dtype=np.float64)
    flat = evalset.flat
    width = int(length.max()) if len(length) else 0
    for first in range(0, len(unit), batch):
        rows = range(first, min(first + batch, len(unit)))
        x = np.zeros((len(rows), width), dtype=np.int64)
        y = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=bool)
        for r, w in enumerate(rows):
            n, s = int(length[w]), int(start[w])
            x[r, :n], y[r, :n], mask[r, :n] = flat[s:s + n], flat[s + 1:s + n + 1], True
        logits = model(torch.from_numpy(x).to(device))
        losses = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(y).to(device).flatten(), reduction="none")
        losses = (losses.view(len(rows), width).double() * torch.from_numpy(mask).to(device)).sum(1).cpu().numpy()
        np.add.at(nats, unit[first:first + len(rows)], losses)
    return nats
