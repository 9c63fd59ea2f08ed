"""MFU against a table of GPU peaks, ``RUN/metrics.jsonl``, TensorBoard, and the console progress.

``metrics.jsonl`` holds one JSON object per line (DuckDB: ``read_json('RUN/metrics.jsonl')``)::

    {"kind": "train", "step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "mem_gb", "time"}
    {"kind": "val", "step", "tokens", "component", "loss"}     one per mixture component, and "all"

``step`` counts optimizer steps done (the first line is step 1); ``time`` is
Unix seconds. When a run resumes from the checkpoint of step S, lines after S
(steps the killed run did but never saved) are dropped first, so every step
appears once.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

#: Dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name(). First match wins.
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (HBM3)
    ("A100", 312.0),
]


def peak_tflops(device_name: str) -> float | None:
    """The GPU's dense bf16 peak from its name, or None for a device not in the table (pass --peak-tflops)."""
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return value
    return None


def mfu(flops_per_token: float, tokens_per_s: float, peak_flops_total: float | None) -> float | None:
    """Model FLOPs utilization: achieved model FLOP/s over the peak of all the GPUs used."""
    if not peak_flops_total:
        return None
    return flops_per_token * tokens_per_s / peak_flops_total


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


class MetricsLog:
    """Appends to ``RUN/metrics.jsonl`` (rank 0 only), mirrored to TensorBoard when it is installed."""

    def __init__(self, run: str, resume_step: int, tensorboard: bool):
        self.path = os.path.join(run, "metrics.jsonl")
        self._truncate_after(resume_step)
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is not installed: metrics.jsonl only
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(os.path.join(run, "tensorboard"), purge_step=resume_step + 1)

    def _truncate_after(self, step: int) -> None:
        """Keep only whole lines of steps <= ``step`` (rewritten under a temporary name, then renamed)."""
        if not os.path.exists(self.path):
            return
        kept = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a run killed mid-write
                if isinstance(record, dict) and record.get("step", math.inf) <= step:
                    kept.append(json.dumps(record) + "\n")
        with open(self.path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(self.path + ".tmp", self.path)

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            step = record["step"]
            if record["kind"] == "train":
                for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "mem_gb"):
                    if record.get(key) is not None:
                        self.tb.add_scalar(f"train/{key}", record[key], step)
            else:
                self.tb.add_scalar(f"val/{record['component']}", record["loss"], step)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class Progress:
    """A rich progress bar on a terminal; otherwise a plain line every ``every`` steps (logs, torchrun)."""

    def __init__(self, total: int, start: int, every: int, enabled: bool):
        self.total, self.start, self.every, self.enabled = total, start, every, enabled
        self.started = time.perf_counter()
        self.bar = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self.bar = Bar(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                           TimeRemainingColumn())
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, loss: float, tokens_per_s: float, mfu_value: float | None) -> None:
        if not self.enabled:
            return
        info = f"loss {loss:.4f}  {tokens_per_s:,.0f} tok/s" + (f"  MFU {mfu_value:.1%}" if mfu_value else "")
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif step % self.every == 0 or step == self.total:
            done = step - self.start
            left = (time.perf_counter() - self.started) / done * (self.total - step) if done else 0.0
            print(f"step {step}/{self.total}  {info}  {_duration(left)} left", flush=True)

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
