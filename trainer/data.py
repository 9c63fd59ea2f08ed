"""Batches from a ``curate mix`` folder: the data position is a sample index.

The mixture's train split is a fixed sequence of samples (``MixtureDataset``:
``ds[i]`` is ``seq_len + 1`` token ids, the same ids on every run). Step ``s``
trains on global samples ``[s·B, (s+1)·B)`` for a global batch of ``B``
samples; with ``W`` ranks, rank ``r`` reads its shard (global samples
``j·W + r``) at ``[s·B/W, (s+1)·B/W)``, so the union over ranks is exactly the
one-rank batch. Resuming at step ``s`` needs nothing but ``s``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class Batches:
    """Rank ``rank``'s micro-batches of each step: ``accum`` batches of ``micro`` samples, as (inputs, targets)."""

    def __init__(self, dataset, rank: int, world: int, global_samples: int, micro: int, seq_len: int,
                 device: torch.device):
        self.shard = dataset.shard(rank, world)
        self.per_rank = global_samples // world
        self.micro, self.seq_len, self.device = micro, seq_len, device
        self.accum = self.per_rank // micro

    def step(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The step's micro-batches, already on their way to the device (copies are asynchronous on GPU)."""
        start = step * self.per_rank
        return [self.batch(range(first, first + self.micro))
                for first in range(start, start + self.accum * self.micro, self.micro)]

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.from_numpy(self.shard.batch(indices)[:, : self.seq_len + 1])
        if self.device.type == "cuda":
            tokens = tokens.pin_memory().to(self.device, non_blocking=True)
        return tokens[:, :-1], tokens[:, 1:]


def eval_batches(dataset, rank: int, world: int, samples: int, micro: int, seq_len: int, device: torch.device
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The first ``samples`` samples of a held-out set, split over ranks: (inputs, targets, weight per sample).

    Every rank runs the same number of forward passes (sharded models need all
    ranks in every forward); a rank short of samples repeats sample 0 with
    weight 0.
    """
    n = min(samples, len(dataset))
    per_rank = -(-n // world)
    mine = list(range(rank, n, world))
    weights = [1.0] * len(mine) + [0.0] * (per_rank - len(mine))
    mine += [0] * (per_rank - len(mine))
    for first in range(0, per_rank, micro):
        idx, w = mine[first:first + micro], weights[first:first + micro]
        tokens = torch.from_numpy(dataset.batch(idx)[:, : seq_len + 1]).to(device)
        yield tokens[:, :-1], tokens[:, 1:], torch.tensor(w, device=device)
