"""The training config: a YAML file, every key also settable as ``--set key=value``.

::

    model: 125m                 # a preset (tiny 125m 350m 1b), or a mapping:
    # model: {preset: 125m, n_layers: 10, n_kv_heads: 4}
    global_batch_tokens: 524288 # per optimizer step, across all ranks and accumulation steps
    micro_batch: 8              # samples per forward pass on one rank: lower it on out-of-memory
    lr: 3.0e-4
    schedule: cosine            # or wsd (warmup, stable, linear decay over decay_fraction)

Every key, its type and default is a field below; a wrong key, type or value
is a ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


from curate.params import ConfigError, build_params, parse_scalar, read_yaml_file

#: Model shapes. 1b is TinyLlama's; 125m and 350m are GPT-3's small widths and depths with LLaMA's blocks.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "multiple_of": 32, "tie_embeddings": True},
    "125m": {"dim": 768, "n_layers": 12, "n_heads": 12, "n_kv_heads": 12, "multiple_of": 256},
    "350m": {"dim": 1024, "n_layers": 24, "n_heads": 16, "n_kv_heads": 16, "multiple_of": 256},
    "1b": {"dim": 2048, "n_layers": 22, "n_heads": 32, "n_kv_heads": 4, "multiple_of": 256},
}

#: Keys that may change when a run resumes: how the next steps run, not what the finished steps computed
#: (a smaller micro_batch after an out-of-memory error, more GPUs, FSDP instead of DDP, a moved mixture
#: folder: its fingerprint is checked).
RESUMABLE_CHANGES = {"max_steps", "micro_batch", "parallel", "device", "precision", "compile", "threads", "mixture",
                     "eval_every", "eval_samples", "checkpoint_every", "keep_checkpoints", "log_every", "peak_tflops",
                     "tensorboard"}


@dataclass
class ModelParams:
    preset: str = "tiny"
    """tiny, 125m, 350m or 1b; the keys below, when given, override the preset's."""
    dim: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    """Grouped-query attention: key/value heads (1: multi-query; n_heads: multi-head)."""
    hidden_dim: int | None = None
    """Feed-forward width; default: LLaMA's rule (2/3 of 4·dim, times ffn_dim_multiplier, up to multiple_of)."""
    multiple_of: int | None = None
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool | None = None
    init_std: float = 0.02

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r} (known: {', '.join(PRESETS)})")
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "multiple_of"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be at least 1")
        shape = self.shape()
        if shape["dim"] % shape["n_heads"] or (shape["dim"] // shape["n_heads"]) % 2:
            raise ValueError(f"dim: {shape['dim']} must split into n_heads={shape['n_heads']} heads of an even size")
        if shape["n_heads"] % shape["n_kv_heads"]:
            raise ValueError(f"n_kv_heads: {shape['n_kv_heads']} must divide n_heads={shape['n_heads']}")
        if not (self.rope_theta > 0 and math.isfinite(self.rope_theta)):
            raise ValueError("rope_theta: must be a positive number")
        if not 0 < self.norm_eps < 1:
            raise ValueError("norm_eps: must be in (0, 1)")

    def shape(self) -> dict[str, Any]:
        """The preset with the given keys applied (n_kv_heads defaults to n_heads when n_heads is changed)."""
        shape = dict(PRESETS[self.preset])
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "multiple_of", "ffn_dim_multiplier",
                     "tie_embeddings"):
            if getattr(self, name) is not None:
                shape[name] = getattr(self, name)
        if self.n_heads is not None and self.n_kv_heads is None:
            shape["n_kv_heads"] = self.n_heads
        shape.update(norm_eps=self.norm_eps, rope_theta=self.rope_theta, init_std=self.init_std)
        return shape


@dataclass
class TrainConfig:
    model: ModelParams = field(default_factory=ModelParams)
    mixture: str | None = None
    """The `curate mix` folder (or --mixture)."""
    init_from: str | None = None
    """A local Hugging Face LLaMA folder (config.json + safetensors) to continue pretraining from."""
    embeddings_only_steps: int = 0
    """Train only the embeddings and output layer for this many first steps, then everything (Chinese-LLaMA)."""
    seq_len: int | None = None
    """Tokens per sample; default and maximum: the mixture's."""
    global_batch_tokens: int = 524288
    """Tokens per optimizer step over all ranks; a multiple of seq_len·micro_batch·ranks (gradient accumulation)."""
    micro_batch: int = 8
    """Samples per forward pass on one rank: lower it on out-of-memory (accumulation keeps the global batch)."""
    max_steps: int | None = None
    """Optimizer steps; default: as many as the mixture's train split holds at this global batch."""
    lr: float = 3e-4
    min_lr: float | None = None
    """The schedule's floor; default lr / 10."""
    warmup_steps: int = 200
    schedule: Literal["cosine", "wsd"] = "cosine"
    decay_fraction: float = 0.2
    """wsd: the last fraction of the steps decays linearly to min_lr."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0: no clipping."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """auto: bf16 autocast on GPU, fp32 on CPU."""
    compile: bool | None = None
    """torch.compile the model; default: on GPU only."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """With several ranks: DDP (every rank holds the model) or FSDP2 fully_shard (parameters sharded)."""
    seed: int = 0
    threads: int = 0
    """CPU threads per rank (torch.set_num_threads); 0: torch's default."""
    eval_every: int = 500
    """Validation every this many steps and at the end; 0: never (throughput benchmarks)."""
    eval_samples: int = 128
    """Held-out samples per mixture component for each validation."""
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    """Console line every this many steps when the output is not a terminal (metrics.jsonl gets every step)."""
    peak_tflops: float | None = None
    """Dense bf16 peak per GPU for MFU; default: from the GPU's name (A100 312, H100 SXM 989, H200 989)."""
    tensorboard: bool = True
    """Also write TensorBoard events to RUN/tensorboard when tensorboard is installed."""

    def validate(self) -> None:
        positive = ("global_batch_tokens", "micro_batch", "eval_samples", "checkpoint_every", "keep_checkpoints",
                    "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        for name in ("max_steps", "seq_len"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        for name in ("warmup_steps", "embeddings_only_steps", "threads", "seed", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if not (0 < self.lr < 1 and math.isfinite(self.lr)):
            raise ValueError(f"lr: must be in (0, 1), got {self.lr}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr: must be in [0, lr={self.lr}]")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError("decay_fraction: must be in (0, 1]")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}: must be in [0, 1)")
        if not 0 < self.eps < 1:
            raise ValueError("eps: must be in (0, 1)")
        if not 0 <= self.weight_decay < 1:
            raise ValueError("weight_decay: must be in [0, 1)")
        if not (self.grad_clip >= 0 and math.isfinite(self.grad_clip)):
            raise ValueError("grad_clip: must be >= 0")
        if self.peak_tflops is not None and not self.peak_tflops > 0:
            raise ValueError("peak_tflops: must be positive")
        if self.max_steps is not None and self.embeddings_only_steps > self.max_steps:
            raise ValueError(f"embeddings_only_steps: {self.embeddings_only_steps} is more than max_steps")
        if self.embeddings_only_steps and not self.init_from:
            raise ValueError("embeddings_only_steps: only makes sense with init_from (a pretrained body)")

    @property
    def floor_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict:
        return asdict(self)


def _set_path(raw: dict, dotted: str, value: Any, file: str | None) -> None:
    parts = dotted.split(".")
    target = raw
    for part in parts[:-1]:
        current = target.get(part)
        if isinstance(current, str) and part == "model":
            current = target[part] = {"preset": current}
        if current is None:
            current = target[part] = {}
        if not isinstance(current, dict):
            raise ConfigError(f"{part} is not a mapping", file=file, key=dotted)
        target = current
    target[parts[-1]] = value


def load_train_config(path: str | None, overrides: list[str] = (), *, extra: dict | None = None) -> TrainConfig:
    """Read ``path`` (YAML), apply ``--set key=value`` overrides and ``extra`` keys, validate."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml_file(path, "training config") or {}
        if not isinstance(raw, dict):
            raise ConfigError("expected a mapping of keys to values", file=path)
    from_command_line = set()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", key="--set")
        _set_path(raw, key.strip(), parse_scalar(value), "--set")
        from_command_line.add(key.strip())
    for key, value in (extra or {}).items():
        if value is not None:
            _set_path(raw, key, value, None)
            from_command_line.add(key)
    try:
        return config_from_dict(raw, file=path)
    except ConfigError as err:
        if err.key in from_command_line or (err.key or "").rpartition(".")[0] in from_command_line:
            raise ConfigError(err.message, file="--set", key=err.key) from None
        raise


def config_from_dict(raw: dict, *, file: str | None = None) -> TrainConfig:
    raw = dict(raw)
    model_raw = raw.pop("model", None)
    if isinstance(model_raw, str):
        model_raw = {"preset": model_raw}
    if model_raw is not None and not isinstance(model_raw, dict):
        raise ConfigError(f"expected a preset name or a mapping, got {model_raw!r}", file=file, key="model")
    raw, model_raw = _yaml_floats(TrainConfig, raw), _yaml_floats(ModelParams, model_raw or {})
    try:
        model = build_params(ModelParams, model_raw, where="model", file=file)
        config = build_params(TrainConfig, {**raw, "model": model}, where="", file=file)
    except ConfigError as err:
        raise ConfigError(err.message, file=err.file, key=(err.key or "").lstrip(".") or None) from None
    return config


def _yaml_floats(cls: type, raw: dict) -> dict:
    """``3e-4`` as a number: YAML 1.1 (PyYAML) reads an exponent without a dot as a string."""
    hints = typing.get_type_hints(cls)
    out = dict(raw)
    for key, value in raw.items():
        if isinstance(value, str) and "float" in str(hints.get(key)):
            try:
                out[key] = float(value)
            except ValueError:
                pass  # left for build_params to report
    return out


def config_hash_fields(config: TrainConfig) -> dict:
    """The config's keys that a resumed run must share with the run it continues."""
    data = config.to_dict()
    return {k: v for k, v in data.items() if k not in RESUMABLE_CHANGES}


def config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ, dotted (``model.dim``)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
