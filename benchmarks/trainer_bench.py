"""Training throughput: ``curate train`` against transformers' ``LlamaForCausalLM``, same model, batch, optimizer.

    python -m curate.benchmarks.trainer_bench --gpu    125m and 350m, seq_len 2048, bf16, one GPU (~8 min, H200)
    python -m curate.benchmarks.trainer_bench          CPU, the tiny preset in fp32: a regression guard

Both sides train on the same real mixture folder (``curate mix`` over token
shards written by ``curate tokenize``) built first from a synthetic corpus:
throughput does not depend on what the tokens say, only on the shapes, and a
synthetic corpus needs no download. The tokenizer is trained by ``curate
tokenizer train`` and then grown to the model's vocabulary (32000 on GPU) with
appended pieces, so the embedding and output matrices have their real size.

* ours: ``curate.trainer.train`` exactly as ``curate train`` runs it (GPU:
  bf16 autocast, ``torch.compile``, fused AdamW; CPU: fp32), tokens/s and MFU
  read back from ``RUN/metrics.jsonl``, the median over the steps after the
  first ``--skip`` (compilation happens in the first);
* transformers: ``AutoModelForCausalLM.from_config(config,
  attn_implementation="sdpa")`` trained the way its documentation shows
  (``outputs = model(input_ids=..., labels=...)``, ``outputs.loss.backward()``,
  bf16 autocast on GPU), with the same fused AdamW (β 0.9/0.95, weight decay
  0.1 on matrices), gradient clipping at 1.0 and the same micro-batches.

MFU uses the same PaLM formula for both (``Transformer.flops_per_token``) and
the GPU's dense bf16 peak (``--peak-tflops`` for a GPU not in the table). On
CPU each side runs three times, alternated, and the faster run of each counts:
a shared machine's load comes and goes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time


def synthetic_corpus(path: str, tokens: int, seed: int = 0) -> None:
    """JSONL documents of Zipf-distributed made-up words (about ``tokens`` tokens of a 1000-piece tokenizer)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(20000)]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    written, doc = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < tokens * 3:  # ~3 characters per token
            text = " ".join(rng.choices(words, weights, k=rng.randint(200, 1500)))
            f.write(json.dumps({"id": f"doc-{doc}", "text": text}) + "\n")
            written += len(text)
            doc += 1


def build_mixture(workdir: str, vocab: int, tokens: int, seq_len: int) -> str:
    """Tokenizer (grown to ``vocab`` pieces), token shards and a one-component mixture of ``tokens`` tokens."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    from curate.mixtures import build_mixture as build, load_config
    from curate.tokenizers.corpus import input_files
    from curate.tokenizers.extend import append_pieces, load_proto
    from curate.tokenizers.tokenize import TokenizeParams, tokenize_corpus
    from curate.tokenizers.train import TrainParams, train_tokenizer, write_model

    corpus = os.path.join(workdir, "corpus.jsonl")
    synthetic_corpus(corpus, tokens)
    files = input_files([corpus], "jsonl", "synthetic")
    tokenizer = os.path.join(workdir, "tokenizer")
    base_vocab = min(vocab, 1000)
    train_tokenizer(files, tokenizer, TrainParams(vocab_size=base_vocab, sample_bytes=4 << 20, heldout_fraction=0.0))
    if vocab > base_vocab:  # pieces the text never produces: the matrices get the size of a real vocabulary
        base = load_proto(os.path.join(tokenizer, "tokenizer.model"))
        grown = append_pieces(base, [f"\u2581pad{i:05d}" for i in range(vocab - len(base.pieces))])
        assert grown.trainer_spec.model_type == model_pb2.TrainerSpec.BPE
        write_model(grown.SerializeToString(), tokenizer)
    tokenize_corpus(os.path.join(tokenizer, "tokenizer.model"), files, os.path.join(workdir, "tokens"),
                    TokenizeParams())
    config = os.path.join(workdir, "mixture.yaml")
    with open(config, "w") as f:
        json.dump({"tokens": tokens, "seq_len": seq_len, "seed": 1, "validation": 0.01, "max_epochs": 100,
                   "paths": [os.path.join(workdir, "tokens")],
                   "components": [{"name": "synthetic", "source": "synthetic", "weight": 1.0}]}, f)
    output = os.path.join(workdir, "mix")
    build(load_config(config), output)
    return output


def run_ours(mix: str, workdir: str, preset: str, micro: int, steps: int, skip: int, device: str,
             peak: float | None) -> dict:
    from curate.trainer.config import load_train_config
    from curate.trainer.train import train

    run = os.path.join(workdir, f"ours-{preset}-{time.time_ns()}")
    sets = [f"model={preset}", f"micro_batch={micro}", f"max_steps={steps}", "eval_every=0",
            f"checkpoint_every={steps}", "keep_checkpoints=1", "warmup_steps=5", f"device={device}",
            "tensorboard=false"]
    seq_len = _mixture_seq_len(mix)
    sets.append(f"global_batch_tokens={micro * seq_len}")
    config = load_train_config(None, sets, extra={"mixture": mix, "peak_tflops": peak})
    started = time.perf_counter()
    train(config, run, progress=False)
    wall = time.perf_counter() - started
    with open(os.path.join(run, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f if '"train"' in line][skip:]
    run_config = json.load(open(os.path.join(run, "config.json")))
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in lines),
            "mfu": statistics.median(r["mfu"] for r in lines) if lines[0]["mfu"] is not None else None,
            "mem_gb": max(r["mem_gb"] for r in lines), "loss": lines[-1]["loss"], "wall_s": wall,
            "params_m": run_config["num_params"] / 1e6, "flops_per_token": run_config["flops_per_token"],
            "model": run_config["model"], "peak_tflops": run_config["peak_tflops"]}


def run_transformers(mix: str, model_args: dict, micro: int, steps: int, skip: int, device: str,
                     peak_tflops: float | None, flops_per_token: float) -> dict:
    import torch

    from curate.mixtures import MixtureDataset
    from curate.tokenizers.export_hf import import_transformers
    from curate.trainer.hf import hf_config
    from curate.trainer.model import ModelArgs, optimizer_groups

    transformers = import_transformers()
    args = ModelArgs(**model_args)
    config = transformers.LlamaConfig(**{k: v for k, v in hf_config(args, None, None, "float32").items()
                                         if k not in ("architectures", "model_type", "torch_dtype")})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").to(device).train()
    cuda = device == "cuda"
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95), fused=cuda)
    data = MixtureDataset(mix)
    seq_len = data.seq_len
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    rates, loss = [], None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps):
        t0 = time.perf_counter()
        batch = torch.from_numpy(data.batch(range(step * micro, (step + 1) * micro))[:, :seq_len])
        batch = batch.pin_memory().to(device, non_blocking=True) if cuda else batch
        with autocast:
            outputs = model(input_ids=batch, labels=batch)
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = outputs.loss.item()
        if cuda:
            torch.cuda.synchronize()
        rates.append(micro * seq_len / (time.perf_counter() - t0))
    tokens_per_s = statistics.median(rates[skip:])
    return {"tokens_per_s": tokens_per_s,
            "mfu": flops_per_token * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else None,
            "mem_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None, "loss": loss}


def _mixture_seq_len(mix: str) -> int:
    with open(os.path.join(mix, "mixture.json")) as f:
        return json.load(f)["seq_len"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="125m and 350m at seq_len 2048 in bf16 on one GPU")
    parser.add_argument("--presets", default=None, help="comma-separated (default: 125m,350m on GPU, tiny on CPU)")
    parser.add_argument("--micro-batch", type=int, default=None, help="samples per step (GPU 16, CPU 8)")
    parser.add_argument("--steps", type=int, default=None, help="steps per model (GPU 40, CPU 20)")
    parser.add_argument("--skip", type=int, default=None, help="first steps left out of the median (GPU 10, CPU 5)")
    parser.add_argument("--repeat", type=int, default=None, help="alternated runs of each side (GPU 1, CPU 3)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--workdir", default=None, help="keep the mixture and runs here (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    opts = parser.parse_args()

    import torch

    if opts.gpu and not torch.cuda.is_available():
        parser.error("--gpu: no CUDA GPU is visible to torch")
    device = "cuda" if opts.gpu else "cpu"
    presets = (opts.presets or ("125m,350m" if opts.gpu else "tiny")).split(",")
    micro = opts.micro_batch or (16 if opts.gpu else 8)
    steps = opts.steps or (40 if opts.gpu else 20)
    opts.skip = opts.skip if opts.skip is not None else (10 if opts.gpu else 5)
    opts.repeat = opts.repeat or (1 if opts.gpu else 3)
    seq_len, vocab = (2048, 32000) if opts.gpu else (256, 2000)
    if not opts.gpu:
        torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    workdir = opts.workdir or tempfile.mkdtemp(prefix="trainer-bench-")
    os.makedirs(workdir, exist_ok=True)
    name = torch.cuda.get_device_name() if opts.gpu else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {name}; torch {torch.__version__}; seq_len {seq_len}, micro-batch {micro}, {steps} steps "
          f"(median of the last {steps - opts.skip}, best of {opts.repeat} alternated runs); workdir {workdir}",
          flush=True)

    started = time.perf_counter()
    mix = build_mixture(workdir, vocab, tokens=int(micro * seq_len * (steps + 2) * 1.05), seq_len=seq_len)
    print(f"mixture built in {time.perf_counter() - started:.0f}s: {mix}", flush=True)
    results = []
    for preset in presets:
        ours_runs, hf_runs = [], []
        for _ in range(opts.repeat):  # alternated, the faster of each kept: a shared machine's load comes and goes
            ours_runs.append(run_ours(mix, workdir, preset, micro, steps, opts.skip, device, opts.peak_tflops))
            hf_runs.append(run_transformers(mix, ours_runs[-1]["model"], micro, steps, opts.skip, device,
                                            ours_runs[-1]["peak_tflops"], ours_runs[-1]["flops_per_token"]))
        ours = max(ours_runs, key=lambda r: r["tokens_per_s"])
        hf = max(hf_runs, key=lambda r: r["tokens_per_s"])
        results.append({"preset": preset, "device": name, "seq_len": seq_len, "micro_batch": micro,
                        "ours": ours, "transformers": hf, "speedup": ours["tokens_per_s"] / hf["tokens_per_s"]})
        ours.pop("model")
        print(f"\n{preset} ({ours['params_m']:.3g}M parameters, {ours['flops_per_token'] / 1e6:,.1f} MFLOP/token)")
        for label, r in (("curate train", ours), ("transformers LlamaForCausalLM (sdpa)", hf)):
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
            mem = f"{r['mem_gb']:.1f} GB" if r["mem_gb"] is not None else ""
            print(f"  {label:40s} {r['tokens_per_s']:>12,.0f} tokens/s   MFU {mfu:>6s}   {mem}", flush=True)
        print(f"  ratio: {results[-1]['speedup']:.2f}x transformers' tokens/s")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
