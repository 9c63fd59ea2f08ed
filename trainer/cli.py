"""``curate train``: train on a mixture (``curate train train.yaml --mixture MIX --output RUN``) and
``curate train export RUN --output HF_DIR``.

The group runs its ``run`` command when the first argument is not a
subcommand, so ``curate train CONFIG ...`` and ``curate train run CONFIG ...``
are the same. ``python -m curate.trainer ...`` (what torchrun starts on every
rank) takes the same arguments. Exit codes: 0 done, 1 failed while training,
2 usage or config error.

Nothing here imports torch at import time: a plain install lists and helps
every command, and ``curate train`` without torch says how to install it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click

from curate.params import ConfigError

INSTALL_HINT = "curate train needs PyTorch: pip install 'curate[train]' (CPU or CUDA build of torch 2.13)"


class TrainGroup(click.Group):
    """A group whose default command is ``run``: ``curate train CONFIG ...`` means ``curate train run CONFIG ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        click.echo(f"error: {INSTALL_HINT}", err=True)
        sys.exit(2)


def _rank_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _fail(message: str, code: int) -> None:
    """Print once for a config error (every rank has it), from each failing rank otherwise; exit."""
    rank, world = _rank_info()
    if code == 2 and rank != 0:
        sys.exit(code)
    prefix = f"[rank {rank}] " if world > 1 else ""
    label = "config error" if code == 2 else "error"
    click.echo(f"{prefix}{label}: {message}", err=True)
    sys.exit(code)


@click.group("train", cls=TrainGroup, invoke_without_command=False,
             context_settings={"help_option_names": ["-h", "--help"]})
def train() -> None:
    """Pretrain a LLaMA-style model on a `curate mix` folder; export it for transformers.

    \b
    curate train train.yaml --mixture MIX --output RUN        train, or resume RUN where it stopped
    curate train train.yaml --mixture MIX -o RUN --nproc 4    the same on 4 GPUs (starts torchrun)
    torchrun --nproc_per_node 4 -m curate.trainer train.yaml --mixture MIX --output RUN
    curate train export RUN --output HF_DIR                   a transformers LlamaForCausalLM folder
    """


@train.command("run")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False))
@click.option("--mixture", "-m", help="The `curate mix` folder (default: `mixture:` in the config).")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Run folder: config, metrics.jsonl, checkpoints (an existing run resumes).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (model.n_layers=4, lr=1e-3, micro_batch=4).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Ranks (GPUs) on this machine: >1 starts torchrun.")
@click.option("--peak-tflops", type=float, help="Dense bf16 peak per GPU for MFU (default: from the GPU name).")
@click.option("--no-progress", is_flag=True, help="No progress bar or step lines.")
def run_command(config_file, mixture, output, overrides, nproc, peak_tflops, no_progress) -> None:
    """Train on a mixture; every key of CONFIG_FILE can also be given as --set KEY=VALUE."""
    from curate.trainer.config import load_train_config

    _require_torch()
    try:
        config = load_train_config(config_file, list(overrides),
                                   extra={"mixture": mixture, "peak_tflops": peak_tflops})
    except ConfigError as err:
        _fail(str(err), 2)
    if nproc > 1:
        sys.exit(_launch_torchrun(nproc, config_file, mixture, output, overrides, peak_tflops, no_progress))
    from curate.trainer.train import TrainError, train as run_training

    try:
        summary = run_training(config, output, progress=not no_progress)
        _finish_together()
    except ConfigError as err:
        _fail(str(err), 2)
    except TrainError as err:
        _fail(str(err), err.exit_code)
    finally:
        _shutdown_process_group()
    if _rank_info()[0] == 0:
        if summary.get("already_complete"):
            click.echo(f"{output}: already complete at step {summary['step']} (raise max_steps to train further)")
        else:
            click.echo(json.dumps({k: summary[k] for k in ("step", "tokens", "loss", "val", "seconds")}))


def _launch_torchrun(nproc, config_file, mixture, output, overrides, peak_tflops, no_progress) -> int:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "curate.trainer"]
    if config_file:
        args.append(config_file)
    if mixture:
        args += ["--mixture", mixture]
    args += ["--output", output]
    for item in overrides:
        args += ["--set", item]
    if peak_tflops is not None:
        args += ["--peak-tflops", str(peak_tflops)]
    if no_progress:
        args.append("--no-progress")
    # PYTHONSAFEPATH: the working directory stays off sys.path, so a checkout's curate/ folder never shadows
    # the installed package in the ranks
    return subprocess.call(args, env={**os.environ, "PYTHONSAFEPATH": "1"})


def _finish_together() -> None:
    """Wait for every rank before tearing the process group down.

    A rank that destroys its group (and exits) while another still has collectives in flight can leave
    gloo's worker threads holding work at interpreter exit, which aborts the process (SIGABRT,
    "terminate called without an active exception"; seen once under load with FSDP2 on CPU).
    """
    import gc

    import torch.distributed as dist

    gc.collect()  # the finished run's modules and their pending work objects go before the group does
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _shutdown_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@train.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Hugging Face folder to write.")
@click.option("--step", type=click.IntRange(min=1), help="Checkpoint step (default: the newest).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing, non-empty output folder.")
def export_command(run, output, step, dtype, overwrite) -> None:
    """Write a checkpoint of RUN as a transformers LLaMA folder (config, safetensors, tokenizer)."""
    _require_torch()
    from curate.trainer.hf import HFError, export_run

    if os.path.isdir(output) and os.listdir(output) and not overwrite:
        raise click.UsageError(f"{output}: exists and is not empty (use --overwrite)")
    try:
        report = export_run(run, output, step=step, dtype=dtype, overwrite=overwrite)
    except HFError as err:
        _fail(str(err), 1)
    click.echo(json.dumps(report, indent=2))


def main() -> None:
    """``python -m curate.trainer``: the ``run`` command (what torchrun starts on every rank)."""
    run_command(prog_name="python -m curate.trainer")
