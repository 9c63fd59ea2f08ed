"""The training step of ``curate demo``: the ``tiny`` model on the demo's mixture, on the CPU, briefly.

It trains on every sample the demo mixture holds (about a hundred steps of
four 256-token samples, well under a minute on two cores) and prints the
training loss along the way, the validation loss of each mixture component,
and the unigram entropy of the training tokens: the loss of the best model
that ignores context. A loss below it means the model uses what came before.
"""

from __future__ import annotations

import json
import os

#: `curate train` settings for the demo (the same as --set KEY=VALUE on the command line).
DEMO_SETTINGS = ["model=tiny", "global_batch_tokens=1024", "micro_batch=4", "lr=3e-3", "warmup_steps=10",
                 "eval_every=50", "checkpoint_every=50", "keep_checkpoints=1", "device=cpu", "log_every=20"]


def unigram_entropy(dataset) -> float:
    """Entropy in nats of the token frequencies of a dataset's samples (the targets: each sample but its first)."""
    import numpy as np

    counts = np.zeros(dataset.vocab_size, dtype=np.int64)
    for first in range(0, len(dataset), 256):
        rows = dataset.batch(range(first, min(first + 256, len(dataset))))[:, 1:]
        counts += np.bincount(rows.ravel(), minlength=dataset.vocab_size)[: dataset.vocab_size]
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def training_step(directory: str, console) -> int:
    """Train ``DIR/train`` on ``DIR/mix``; returns the exit code (0 also when torch is not installed: it says so)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        console.print("  skipped: curate train needs PyTorch: pip install 'curate[train]'")
        return 0
    from curate.mixtures import MixtureDataset
    from curate.trainer.config import load_train_config
    from curate.trainer.train import TrainError, train

    mixture, run = os.path.join(directory, "mix"), os.path.join(directory, "train")
    console.print(f"[dim]curate train --mixture {mixture} --output {run} "
                  + " ".join(f"--set {s}" for s in DEMO_SETTINGS) + "[/dim]")
    try:
        summary = train(load_train_config(None, DEMO_SETTINGS, extra={"mixture": mixture}), run)
    except TrainError as err:
        console.print(f"[red]training failed[/red] {err}")
        return err.exit_code
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    train_lines = [r for r in records if r["kind"] == "train"]
    every = max(1, len(train_lines) // 8)
    console.print("  step  train loss  tokens/s")
    for r in train_lines[::every] + ([train_lines[-1]] if (len(train_lines) - 1) % every else []):
        console.print(f"  {r['step']:4d}  {r['loss']:10.4f}  {r['tokens_per_s']:8,.0f}")
    last_val = [r for r in records if r["kind"] == "val" and r["step"] == summary["step"]]
    if last_val:
        console.print("  validation loss at the end: "
                      + ", ".join(f"{r['component']} {r['loss']:.3f}" for r in last_val))
    entropy = unigram_entropy(MixtureDataset(mixture))
    final = sum(r["loss"] for r in train_lines[-10:]) / len(train_lines[-10:])
    relation = "below" if final < entropy else "not yet below"
    console.print(f"  training loss (mean of the last 10 steps) {final:.3f}: {relation} the unigram entropy of the "
                  f"training tokens, {entropy:.3f} nats")
    console.print(f"  export it for transformers: curate train export {run} --output {directory}/hf")
    return 0
