"""The training loop, top to bottom: ``train(config, output)``.

One process per GPU (``torchrun``), or one process on the CPU. Each step:
set the learning rate, run ``accum`` micro-batches forward and backward
(gradients synchronized only on the last), clip, check the loss is finite,
step AdamW, log one line; every ``eval_every`` steps the validation loss of
every mixture component; every ``checkpoint_every`` steps (and at the end) a
checkpoint. A run folder with a checkpoint resumes from it by itself: the
data position is the step (``data.py``), so the resumed run computes exactly
what the uninterrupted one would have.

Errors are ``TrainError`` with the exit code the command line should return:
2 for a config that cannot work, 1 for a failure while training.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from curate.params import ConfigError
from curate.trainer import checkpoint
from curate.trainer.config import TrainConfig, config_diff, config_hash_fields
from curate.trainer.data import Batches, eval_batches
from curate.trainer.hf import HFError, load_pretrained, pad_vocab
from curate.trainer.metrics import MetricsLog, Progress, finite_or_none, mfu, peak_tflops
from curate.trainer.model import ModelArgs, Transformer, optimizer_groups

EMBEDDING_PARAMS = ("tok_embeddings.weight", "output.weight")


class TrainError(RuntimeError):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def learning_rate(step: int, config: TrainConfig, max_steps: int) -> float:
    """Linear warmup, then cosine to min_lr, or stable then linear decay over the last decay_fraction (wsd)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "wsd":
        decay_steps = max(1, round(config.decay_fraction * max_steps))
        decay_start = max_steps - decay_steps
        if step < decay_start:
            return config.lr
        return config.lr + (config.floor_lr - config.lr) * (step - decay_start + 1) / decay_steps
    progress = (step - config.warmup_steps) / max(1, max_steps - config.warmup_steps)
    return config.floor_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (config.lr - config.floor_lr)


@dataclass
class Ranks:
    rank: int
    local_rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_device(config: TrainConfig) -> Ranks:
    """The device, and the process group when torchrun started several ranks."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise TrainError("device: cuda, but no CUDA GPU is visible to torch (torch.cuda.is_available() is False; "
                         "a CPU-only torch build, or no driver); use --set device=cpu", exit_code=2)
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 matmuls left outside autocast
        torch.backends.cudnn.allow_tf32 = True
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    if config.threads:
        torch.set_num_threads(config.threads)
    if not use_cuda:
        torch.use_deterministic_algorithms(True)  # CPU fp32 resumes bitwise
    return Ranks(rank, local_rank, world, device)


def open_mixture(path: str, split: str, component: str | None = None):
    from curate.mixtures import MixtureDataset

    try:
        return MixtureDataset(path, split=split, component=component)
    except (ValueError, OSError) as err:  # MixtureError is a ValueError naming the file and key
        raise TrainError(str(err), exit_code=2) from None


def batch_geometry(config: TrainConfig, seq_len: int, world: int, train_samples: int) -> tuple[int, int, int]:
    """(global batch in samples, accumulation steps, max steps); a batch that cannot split evenly is an error."""
    if config.global_batch_tokens % seq_len:
        raise ConfigError(f"{config.global_batch_tokens} is not a multiple of seq_len {seq_len}",
                          key="global_batch_tokens")
    samples = config.global_batch_tokens // seq_len
    if samples % (world * config.micro_batch):
        raise ConfigError(f"{samples} samples per step ({config.global_batch_tokens} tokens / seq_len {seq_len}) do "
                          f"not split evenly into {world} rank(s) x micro_batch {config.micro_batch}",
                          key="micro_batch")
    accum = samples // (world * config.micro_batch)
    available = train_samples // samples
    if available == 0:
        raise ConfigError(f"the mixture's train split holds {train_samples} samples, fewer than one global batch "
                          f"({samples})", key="global_batch_tokens")
    if config.max_steps is not None and config.max_steps > available:
        raise ConfigError(f"{config.max_steps} steps of {samples} samples need {config.max_steps * samples} samples; "
                          f"the mixture's train split holds {train_samples} ({available} steps)", key="max_steps")
    return samples, accum, config.max_steps or available


def read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_json(obj: dict, path: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(path + ".tmp", path)


def model_state(model) -> dict:
    """The full (unsharded) state dict on the CPU; a collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def parallelize(model: Transformer, config: TrainConfig, ranks: Ranks, bf16: bool, compile_model: bool):
    """Wrap for several ranks (DDP, or FSDP2: each block sharded, then the root) and compile."""
    if config.parallel == "fsdp" and ranks.world > 1:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for block in model.layers:
            if compile_model:
                block.compile()
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[ranks.local_rank] if ranks.device.type == "cuda" else None)
        if compile_model:  # DDP first, then compile (torch's advice): graphs split at buckets, overlapping all-reduce
            ddp.compile()
        return ddp
    if compile_model:
        model.compile()
    return model


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator failing (a RuntimeError)."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(err))


def train(config: TrainConfig, output: str, *, progress: bool = True) -> dict:
    """Train (or resume) the run in ``output`` on ``config.mixture``; returns the summary written to done.json.

    torch's thread count and determinism switch are set for the run and restored after it, so a caller in
    the same process (a notebook, a test) gets its own settings back.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        return _train(config, output, progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(config: TrainConfig, output: str, progress: bool) -> dict:
    if not config.mixture:
        raise TrainError("no mixture: give --mixture MIX (or `mixture:` in the config file)", exit_code=2)
    ranks = setup_device(config)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and ranks.device.type == "cuda")
    if bf16 and ranks.device.type == "cpu" and config.precision == "bf16":
        raise TrainError("precision: bf16 is for GPUs; on the CPU training runs in fp32 (precision: fp32)",
                         exit_code=2)
    compile_model = config.compile if config.compile is not None else ranks.device.type == "cuda"
    torch.manual_seed(config.seed)  # the same initial weights on every rank

    # ---- the mixture and the batch geometry
    train_set = open_mixture(config.mixture, "train")
    meta = train_set.meta
    seq_len = config.seq_len or train_set.seq_len
    if seq_len > train_set.seq_len:
        raise ConfigError(f"{seq_len} is longer than the mixture's samples ({train_set.seq_len} tokens, "
                          f"{config.mixture}/mixture.json)", key="seq_len")
    global_samples, accum, max_steps = batch_geometry(config, seq_len, ranks.world, len(train_set))

    # ---- the run folder: a new run, or the checkpoint to resume from (nothing is written before the checks pass)
    run_config_path = os.path.join(output, "config.json")
    saved = read_json(run_config_path)
    if saved is not None:
        changed = config_diff(saved["resume_key"], config_hash_fields(config))
        if changed:
            what = "; ".join(_describe_change(saved["resume_key"], config_hash_fields(config), k) for k in changed[:3])
            raise ConfigError(f"{output} holds a run with a different config ({what}); use a new --output, or the "
                              "same config to resume", key=changed[0])
        if saved["mixture_fingerprint"] != meta.get("fingerprint"):
            raise ConfigError(f"{output} was trained on mixture fingerprint {saved['mixture_fingerprint']}, but "
                              f"{config.mixture} has {meta.get('fingerprint')}: a different mixture", key="mixture")
    if ranks.main:
        checkpoint.remove_partial(output)
    latest = checkpoint.list_checkpoints(output)[-1] if checkpoint.list_checkpoints(output) else None
    resume_state = None
    if latest is not None:
        try:
            resume_state = checkpoint.read_state(latest[1])
        except checkpoint.CheckpointError as err:
            raise TrainError(str(err)) from None
        if resume_state.get("tokenizer_sha256") != meta.get("tokenizer_sha256"):
            raise TrainError(f"{config.mixture}/mixture.json: tokenizer_sha256 differs from the checkpoint's "
                             f"({latest[1]}): the mixture's vocabulary does not fit the model", exit_code=2)
    done = read_json(os.path.join(output, "done.json"))
    start_step = resume_state["step"] if resume_state else 0
    if done is not None and start_step >= max_steps:
        return {**done, "already_complete": True}

    # ---- the model: a new one, a Hugging Face one (vocabulary grown), or the checkpoint's
    hf_report = saved.get("init_from") if saved else None
    if resume_state is None and config.init_from:
        try:
            args, hf_state, hf_report = load_pretrained(config.init_from, meta["tokenizer"], train_set.vocab_size,
                                                        seq_len)
        except HFError as err:
            raise TrainError(str(err), exit_code=2) from None
    elif saved is not None:
        args = ModelArgs(**saved["model"])
    else:
        args = ModelArgs(**config.model.shape(), vocab_size=pad_vocab(train_set.vocab_size), max_seq_len=seq_len)
    if train_set.vocab_size > args.vocab_size:
        raise TrainError(f"{config.mixture}/mixture.json: vocab_size {train_set.vocab_size} does not fit the "
                         f"model's {args.vocab_size} embedding rows", exit_code=2)
    if seq_len > args.max_seq_len:
        raise ConfigError(f"{seq_len} is longer than the run's max_seq_len {args.max_seq_len}", key="seq_len")
    with torch.device("cpu"):
        model = Transformer(args)
    if resume_state is not None:
        model.load_state_dict(_load(latest[1], "model.pt"))
    elif config.init_from:
        model.load_state_dict(hf_state)
        del hf_state
    flops_per_token = model.flops_per_token(seq_len)
    num_params = model.num_params()
    model.to(ranks.device)
    wrapped = parallelize(model, config, ranks, bf16, compile_model)
    fsdp = config.parallel == "fsdp" and ranks.world > 1
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2), eps=config.eps,
                                  fused=ranks.device.type == "cuda")
    if resume_state is not None:
        _load_optimizer(model, optimizer, _load(latest[1], "optimizer.pt"))
        rngs = _load(latest[1], "rng.pt")
        if ranks.rank < len(rngs):
            torch.set_rng_state(rngs[ranks.rank]["torch"])
            if "cuda" in rngs[ranks.rank] and ranks.device.type == "cuda":
                torch.cuda.set_rng_state(rngs[ranks.rank]["cuda"], ranks.device)
    embedding_params = {id(p) for name, p in model.named_parameters() if name in EMBEDDING_PARAMS}
    body_params = [p for p in model.parameters() if id(p) not in embedding_params]

    # ---- validation sets: each component's held-out samples
    val_sets = {name: open_mixture(config.mixture, "val", name) for name in train_set.components}
    val_sets = {name: ds for name, ds in val_sets.items() if len(ds)}

    peak = config.peak_tflops or (peak_tflops(torch.cuda.get_device_name(ranks.device))
                                  if ranks.device.type == "cuda" else None)
    peak_total = peak * 1e12 * ranks.world if peak else None
    if ranks.main:
        os.makedirs(output, exist_ok=True)
        if saved is None:
            shutil.copyfile(meta["tokenizer"], os.path.join(output, "tokenizer.model"))
        write_json({
            "config": config.to_dict(), "resume_key": config_hash_fields(config), "model": args.to_dict(),
            "mixture": os.path.abspath(config.mixture), "mixture_fingerprint": meta.get("fingerprint"),
            "tokenizer_sha256": meta.get("tokenizer_sha256"), "seq_len": seq_len, "world_size": ranks.world,
            "global_batch_samples": global_samples, "accum_steps": accum, "max_steps": max_steps,
            "num_params": num_params, "flops_per_token": flops_per_token, "peak_tflops": peak,
            "device": torch.cuda.get_device_name(ranks.device) if ranks.device.type == "cuda" else "cpu",
            "precision": "bf16" if bf16 else "fp32", "compile": compile_model,
            "parallel": config.parallel if ranks.world > 1 else "single", "init_from": hf_report,
        }, run_config_path)
        if done is not None:  # more steps asked of a finished run
            os.remove(os.path.join(output, "done.json"))
    log = MetricsLog(output, start_step, config.tensorboard) if ranks.main else None
    bar = Progress(max_steps, start_step, config.log_every, progress and ranks.main)
    if ranks.main and start_step:
        bar.note(f"resuming {output} from step {start_step} ({os.path.basename(latest[1])})")
    if ranks.main and peak is None and ranks.device.type == "cuda":
        bar.note(f"MFU not computed: {torch.cuda.get_device_name(ranks.device)} is not in the peak table; "
                 "pass --peak-tflops")

    batches = Batches(train_set, ranks.rank, ranks.world, global_samples, config.micro_batch, seq_len, ranks.device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and not fsdp else contextlib.nullcontext())
    started, last_val = time.time(), {}
    step_tokens = global_samples * seq_len

    def evaluate(step: int) -> dict[str, float]:
        """Mean loss per token on each component's first eval_samples held-out samples, and over all of them."""
        wrapped.eval()
        sums = torch.zeros(2 * len(val_sets), dtype=torch.float64, device=ranks.device)
        with torch.no_grad():
            for k, ds in enumerate(val_sets.values()):
                for x, y, weight in eval_batches(ds, ranks.rank, ranks.world, config.eval_samples,
                                                 config.micro_batch, seq_len, ranks.device):
                    with autocast:
                        logits = wrapped(x)
                    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
                    sums[2 * k] += (losses.sum(1).double() * weight).sum()
                    sums[2 * k + 1] += (weight * y.shape[1]).sum()
        if ranks.world > 1:
            dist.all_reduce(sums)
        wrapped.train()
        sums = sums.cpu().tolist()
        result = {name: sums[2 * k] / sums[2 * k + 1] for k, name in enumerate(val_sets)}
        if result:
            result["all"] = sum(sums[0::2]) / sum(sums[1::2])
        if log is not None:
            for name, loss in result.items():
                log.write({"kind": "val", "step": step, "tokens": step * step_tokens, "component": name,
                           "loss": loss})
        return result

    def save_checkpoint(step: int) -> None:
        states = model_state(model), optimizer_state(model, optimizer)
        rngs = [None] * ranks.world
        if ranks.world > 1:
            dist.all_gather_object(rngs, rng_state(ranks.device))
        else:
            rngs = [rng_state(ranks.device)]
        if ranks.main:
            checkpoint.save(output, step, *states, rngs, {
                "step": step, "tokens": step * step_tokens, "samples_seen": step * global_samples,
                "mixture_fingerprint": meta.get("fingerprint"), "tokenizer_sha256": meta.get("tokenizer_sha256"),
                "world_size": ranks.world, "time": time.time()}, config.keep_checkpoints)
        if ranks.world > 1:
            dist.barrier()

    # ---- the loop
    loss_value = float("nan")
    try:
        micro_batches = batches.step(start_step) if start_step < max_steps else []
        for step in range(start_step, max_steps):
            t0 = time.perf_counter()
            lr = learning_rate(step, config, max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=ranks.device)
            for m, (x, y) in enumerate(micro_batches):
                last = m == accum - 1
                if fsdp:
                    wrapped.set_requires_gradient_sync(last)
                sync = wrapped.no_sync() if ranks.world > 1 and not fsdp and not last else contextlib.nullcontext()
                with sync:
                    with autocast:
                        loss = wrapped(x, y) / accum
                    loss.backward()
                loss_sum += loss.detach()
            if step + 1 < max_steps:  # read the next step's samples while the GPU works through this one
                micro_batches = batches.step(step + 1)
            if step < config.embeddings_only_steps:  # stage 1: the body's gradients are dropped, AdamW skips it
                for p in body_params:
                    p.grad = None
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or float("inf"))
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            if ranks.world > 1:
                dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG if ranks.device.type == "cuda" else dist.ReduceOp.SUM)
                if ranks.device.type != "cuda":  # gloo has no AVG
                    loss_sum /= ranks.world
            loss_value, norm_value = loss_sum.item(), grad_norm.item()
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                raise TrainError(f"step {step + 1}: the loss is {loss_value} and the gradient norm {norm_value}; "
                                 f"stopped before the optimizer step (no checkpoint written; the last good one is "
                                 f"{_last_checkpoint(output)}). Lower lr (now {config.lr}) or raise warmup_steps, "
                                 "then rerun to resume from that checkpoint")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done_steps = step + 1
            if ranks.device.type == "cuda":
                torch.cuda.synchronize(ranks.device)
            seconds = time.perf_counter() - t0
            tokens_per_s = step_tokens / seconds
            step_mfu = mfu(flops_per_token, tokens_per_s, peak_total)
            if log is not None:
                log.write({"kind": "train", "step": done_steps, "tokens": done_steps * step_tokens,
                           "loss": loss_value, "lr": lr, "grad_norm": finite_or_none(norm_value),
                           "tokens_per_s": tokens_per_s, "mfu": step_mfu, "mem_gb": _memory_gb(ranks.device),
                           "time": time.time()})
            bar.update(done_steps, loss_value, tokens_per_s, step_mfu)
            if config.eval_every and (done_steps % config.eval_every == 0 or done_steps == max_steps):
                last_val = evaluate(done_steps)
                if last_val:
                    bar.note(f"step {done_steps} val " + "  ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
            if done_steps % config.checkpoint_every == 0 or done_steps == max_steps:
                save_checkpoint(done_steps)
    except Exception as err:  # noqa: BLE001 - out of memory becomes advice; anything else propagates
        if not is_out_of_memory(err):
            raise
        raise TrainError(
            f"out of memory on {ranks.device} with micro_batch={config.micro_batch} (samples of {seq_len} tokens "
            f"per forward pass, {accum} accumulation step(s)): lower micro_batch, e.g. --set micro_batch="
            f"{max(1, config.micro_batch // 2)}; the global batch stays {config.global_batch_tokens} tokens "
            f"(more accumulation steps), and the run resumes from its last checkpoint "
            f"({_last_checkpoint(output)})") from None
    finally:
        bar.close()
        if log is not None:
            log.close()

    summary = {"step": max_steps, "tokens": max_steps * step_tokens, "loss": finite_or_none(loss_value),
               "val": last_val, "seconds": round(time.time() - started, 2), "resumed_from": start_step}
    if ranks.main:
        write_json(summary, os.path.join(output, "done.json"))
    return summary


def _describe_change(old: dict, new: dict, dotted: str) -> str:
    a, b = old, new
    for part in dotted.split("."):
        a = a.get(part) if isinstance(a, dict) else None
        b = b.get(part) if isinstance(b, dict) else None
    return f"{dotted} was {a!r}, now {b!r}"


def _last_checkpoint(output: str) -> str:
    found = checkpoint.list_checkpoints(output)
    return os.path.basename(found[-1][1]) if found else "none: the run would start from step 0"


def _load(folder: str, name: str):
    try:
        return checkpoint.load_file(folder, name)
    except checkpoint.CheckpointError as err:
        raise TrainError(str(err)) from None


def _load_optimizer(model, optimizer, state: dict) -> None:
    """Load a full optimizer state; the implementation flags (fused, foreach) stay this run's choice."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    flags = [{k: g.get(k) for k in ("fused", "foreach", "capturable")} for g in optimizer.param_groups]
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
    for group, saved in zip(optimizer.param_groups, flags):
        group.update(saved)


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux
