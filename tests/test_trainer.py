"""The trainer on a real mixture: model shapes, exact resume after kill -9, ranks, vocabulary growth, export, faults.

One small real pipeline is built once (module fixture): an English SentencePiece
tokenizer trained on Gutenberg paragraphs, extended with Chinese pieces by
``extend_tokenizer``, both sources tokenized on Ray, and a two-component mixture
(books, wiki) of 64-token samples. The ``tiny`` model trains on it in fp32 on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from curate.cli import main as curate_main  # noqa: E402
from curate.params import ConfigError  # noqa: E402
from curate.tests.corpora import book_paragraphs, chinese_paragraphs  # noqa: E402
from curate.trainer.config import PRESETS, ModelParams, load_train_config  # noqa: E402
from curate.trainer.data import Batches  # noqa: E402
from curate.trainer.model import ModelArgs, Transformer, llama_hidden_dim  # noqa: E402
from curate.trainer.train import learning_rate, train  # noqa: E402

PYTHON = sys.executable
#: The reference run: 60 steps of 16 samples x 64 tokens, checkpoints every 20 steps, two kept.
BASE = ["model=tiny", "global_batch_tokens=1024", "micro_batch=8", "max_steps=60", "lr=3e-3", "warmup_steps=6",
        "eval_every=20", "checkpoint_every=20", "keep_checkpoints=2", "eval_samples=32", "threads=1",
        "tensorboard=false"]
TRAIN_KEYS = {"kind", "step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "mem_gb", "time"}


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pipeline(shared_data, tmp_path_factory):
    """Base tokenizer, its Chinese extension, token shards of both sources, and two mixtures of them."""
    from curate.mixtures import build_mixture, load_config
    from curate.tokenizers.corpus import input_files
    from curate.tokenizers.extend import ExtendParams, extend_tokenizer
    from curate.tokenizers.tokenize import TokenizeParams, tokenize_corpus
    from curate.tokenizers.train import TrainParams, train_tokenizer

    root = tmp_path_factory.mktemp("trainer-pipeline")
    books, wiki = root / "books.jsonl", root / "wiki.jsonl"
    paragraphs = book_paragraphs(shared_data)[:2400]
    with open(books, "w", encoding="utf-8") as f:
        for k in range(0, len(paragraphs), 20):
            f.write(json.dumps({"id": f"book-{k}", "text": "\n\n".join(paragraphs[k:k + 20])}) + "\n")
    chinese = chinese_paragraphs(shared_data)
    for path, texts in ((wiki, chinese[:500]), (root / "zh-all.jsonl", chinese)):
        with open(path, "w", encoding="utf-8") as f:
            for k, text in enumerate(texts):
                f.write(json.dumps({"id": f"wiki-{k}", "text": text}, ensure_ascii=False) + "\n")
    book_files = input_files([str(books)], "jsonl", "books")
    wiki_files = input_files([str(wiki)], "jsonl", "wiki")
    train_tokenizer(book_files, str(root / "base"),
                    TrainParams(vocab_size=600, sample_bytes=400_000, heldout_fraction=0.0, threads=2))
    extend_tokenizer(str(root / "base" / "tokenizer.model"), input_files([str(root / "zh-all.jsonl")], "jsonl", "zh"),
                     str(root / "ext"), ExtendParams(vocab_size=3000, sample_bytes=600_000, character_coverage=0.98,
                                                     threads=2))
    summary = tokenize_corpus(str(root / "ext" / "tokenizer.model"), book_files + wiki_files, str(root / "tokens"),
                              TokenizeParams(workers=2))
    assert not summary["tasks_failed"]
    mixtures = {}
    for name, weights in (("mix", (0.6, 0.4)), ("mix-b", (0.5, 0.5))):
        config = {"tokens": "400k", "seq_len": 64, "seed": 1, "validation": 0.05, "paths": [str(root / "tokens")],
                  "components": [{"name": "books", "source": "books", "weight": weights[0]},
                                 {"name": "wiki", "source": "wiki", "weight": weights[1]}]}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
        build_mixture(load_config(str(root / f"{name}.yaml")), str(root / name))
        mixtures[name] = str(root / name)
    return {"root": root, "base": str(root / "base" / "tokenizer.model"),
            "ext": str(root / "ext" / "tokenizer.model"), **mixtures}


def config(pipeline, *sets: str, mixture: str = "mix"):
    return load_train_config(None, [*BASE, *sets], extra={"mixture": pipeline[mixture]})


@pytest.fixture(scope="module")
def reference(pipeline, tmp_path_factory) -> Path:
    """An uninterrupted in-process run of the BASE config."""
    run = tmp_path_factory.mktemp("reference") / "run"
    train(config(pipeline), str(run), progress=False)
    return run


SHORT = ["max_steps=20", "eval_every=10", "checkpoint_every=10"]


@pytest.fixture(scope="module")
def short_reference(pipeline, tmp_path_factory) -> Path:
    """20 steps of the BASE config on one rank, for the comparisons with several ranks."""
    run = tmp_path_factory.mktemp("short-reference") / "run"
    train(config(pipeline, *SHORT), str(run), progress=False)
    return run


def metrics(run) -> list[dict]:
    with open(Path(run) / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def curve(run) -> list[tuple]:
    """Every logged step's identity and values that must repeat exactly: kind, step, component, loss, lr, norm."""
    return [(r["kind"], r["step"], r.get("component"), r["loss"], r.get("lr"), r.get("grad_norm"))
            for r in metrics(run)]


def trainer_command(pipeline, run, *sets: str) -> list[str]:
    args = [PYTHON, "-m", "curate.trainer", "--mixture", pipeline["mix"], "--output", str(run), "--no-progress"]
    for item in [*BASE, *sets]:
        args += ["--set", item]
    return args


def subprocess_env() -> dict:
    # a checkout's folders never shadow the installed package, whatever the working directory
    return {**os.environ, "PYTHONSAFEPATH": "1", "OMP_NUM_THREADS": "1"}


def invoke(*args: str):
    return CliRunner().invoke(curate_main, list(args))


def cli_train(pipeline, run, *sets: str, mixture: str = "mix"):
    args = ["train", "--mixture", pipeline[mixture], "--output", str(run), "--no-progress"]
    for item in [*BASE, *sets]:
        args += ["--set", item]
    return invoke(*args)


# ---------------------------------------------------------------------------------------------------- the model


def test_llama_hidden_size_rule():
    assert llama_hidden_dim(4096) == 11008  # LLaMA 7B
    assert llama_hidden_dim(5120) == 13824  # LLaMA 13B
    assert llama_hidden_dim(8192, multiple_of=4096, ffn_dim_multiplier=1.3) == 28672  # LLaMA 2 70B
    assert llama_hidden_dim(2048) == 5632  # TinyLlama
    assert llama_hidden_dim(64, multiple_of=32) == 192


def test_architecture_shapes_and_presets():
    args = ModelArgs(**ModelParams(preset="tiny").shape(), vocab_size=128, max_seq_len=32)
    model = Transformer(args)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["tok_embeddings.weight"] == (128, 64)
    assert shapes["layers.0.attention.wq.weight"] == (64, 64)
    assert shapes["layers.0.attention.wk.weight"] == (32, 64)  # 2 key/value heads of 16 for 4 query heads
    assert shapes["layers.0.feed_forward.w1.weight"] == (192, 64)
    assert shapes["layers.1.feed_forward.w2.weight"] == (64, 192)
    assert "output.weight" not in shapes and model.output.weight is model.tok_embeddings.weight  # tied
    assert not any(name.endswith("bias") for name in shapes)
    assert len([n for n in shapes if n.startswith("layers.")]) == 2 * 9
    sizes = {}
    for preset in ("125m", "350m", "1b"):
        with torch.device("meta"):
            big = Transformer(ModelArgs(**PRESETS[preset], vocab_size=32000, max_seq_len=2048))
        sizes[preset] = big.num_params() / 1e6
        assert big.args.hidden_dim == llama_hidden_dim(big.args.dim)
    assert 120 < sizes["125m"] < 140 and 350 < sizes["350m"] < 390 and 1050 < sizes["1b"] < 1150  # TinyLlama 1.1B


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_attention_is_causal_for_every_head_grouping(n_kv_heads):
    torch.manual_seed(0)
    model = Transformer(ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, vocab_size=128,
                                  multiple_of=32, max_seq_len=16)).eval()
    tokens = torch.randint(0, 128, (2, 16))
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 128
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    loss = model(tokens, tokens)
    assert loss.shape == () and math.isfinite(loss.item())


def test_flops_per_token_is_palm_formula():
    args = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=128, multiple_of=32, max_seq_len=32)
    untied, tied = Transformer(args), Transformer(ModelArgs(**{**args.to_dict(), "tie_embeddings": True}))
    body = sum(p.numel() for n, p in untied.named_parameters() if n != "tok_embeddings.weight")
    assert untied.flops_per_token(32) == 6 * body + 12 * 2 * 4 * 16 * 32
    assert tied.flops_per_token(32) == untied.flops_per_token(32)  # the tied output matrix still multiplies


def test_learning_rate_schedules():
    cosine = load_train_config(None, ["lr=1e-3", "min_lr=1e-4", "warmup_steps=10"])
    assert learning_rate(0, cosine, 100) == pytest.approx(1e-4)
    assert learning_rate(9, cosine, 100) == pytest.approx(1e-3)
    assert learning_rate(55, cosine, 100) == pytest.approx(5.5e-4)
    assert learning_rate(100, cosine, 100) == pytest.approx(1e-4)
    wsd = load_train_config(None, ["lr=1e-3", "min_lr=0", "warmup_steps=10", "schedule=wsd", "decay_fraction=0.2"])
    assert learning_rate(50, wsd, 100) == learning_rate(79, wsd, 100) == 1e-3
    assert learning_rate(89, wsd, 100) == pytest.approx(5e-4)
    assert learning_rate(99, wsd, 100) == pytest.approx(0.0)


def test_config_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model: {preset: 125m, n_kv_heads: 5}\nlr: 3e-4\n")  # 3e-4: YAML 1.1 reads a string
    with pytest.raises(ConfigError, match=r"train.yaml: model.n_kv_heads: 5 must divide n_heads=12"):
        load_train_config(str(path))
    path.write_text("lr: 3e-4\nbatch: 8\n")
    with pytest.raises(ConfigError, match=r"train.yaml: batch: unknown parameter"):
        load_train_config(str(path))
    path.write_text("model: huge\n")
    with pytest.raises(ConfigError, match=r"model.preset: unknown 'huge'"):
        load_train_config(str(path))
    assert load_train_config(None, ["lr=3e-4"]).lr == 3e-4
    with pytest.raises(ConfigError, match=r"--set: model.dim: expected an integer"):
        load_train_config(None, ["model.dim=wide"])


# ---------------------------------------------------------------------------------------------------- a run


def test_run_folder_metrics_and_learning(reference, pipeline):
    import duckdb

    from curate.mixtures import MixtureDataset

    records = metrics(reference)
    train_lines = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_lines] == list(range(1, 61))
    assert all(set(r) == TRAIN_KEYS for r in train_lines)
    assert train_lines[-1]["tokens"] == 60 * 1024 and train_lines[0]["mfu"] is None  # no peak known for a CPU
    val = [(r["step"], r["component"]) for r in records if r["kind"] == "val"]
    assert val == [(s, c) for s in (20, 40, 60) for c in ("books", "wiki", "all")]
    con = duckdb.connect()
    got = con.execute(f"SELECT count(*), max(step) FROM read_json('{reference}/metrics.jsonl') "
                      "WHERE kind = 'train'").fetchone()
    assert got == (60, 60)
    assert sorted(os.listdir(reference / "checkpoints")) == ["step-000040", "step-000060"]  # keep_checkpoints 2
    run_config = json.loads((reference / "config.json").read_text())
    mixture = json.loads((Path(pipeline["mix"]) / "mixture.json").read_text())
    assert run_config["model"]["vocab_size"] % 64 == 0
    assert 0 <= run_config["model"]["vocab_size"] - mixture["vocab_size"] < 64
    assert json.loads((reference / "done.json").read_text())["step"] == 60

    # the tiny model learns: below the unigram entropy of the training tokens within the 60 steps
    data = MixtureDataset(pipeline["mix"])
    counts = np.bincount(data.batch(range(len(data)))[:, 1:].ravel())
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log(p)).sum())
    final = np.mean([r["loss"] for r in train_lines[-5:]])
    assert final < entropy - 0.2, (final, entropy)
    assert train_lines[0]["loss"] > entropy  # it started above it

    result = cli_train(pipeline, reference)
    assert result.exit_code == 0 and "already complete" in result.output


def test_validation_split_is_never_trained_on(pipeline):
    from curate.mixtures import MixtureDataset

    train_set, val_set = MixtureDataset(pipeline["mix"]), MixtureDataset(pipeline["mix"], "val")
    assert len(val_set) > 0
    val_rows = {row.tobytes() for row in val_set.batch(range(len(val_set)))}
    one = [x for step in range(60) for x, _ in
           Batches(train_set, 0, 1, 16, 8, 64, torch.device("cpu")).step(step)]
    two = [x for rank in (0, 1) for step in range(60) for x, _ in
           Batches(train_set, rank, 2, 16, 4, 64, torch.device("cpu")).step(step)]
    trained = {row.numpy().tobytes() for x in one for row in x}
    first = train_set.batch(range(60 * 16))[:, :64]
    assert trained == {row.tobytes() for row in first}  # one rank reads global samples [0, steps x batch)
    assert {row.numpy().tobytes() for x in two for row in x} == trained  # two ranks read the same samples
    assert not {row[:64].tobytes() for row in val_set.batch(range(len(val_set)))} & trained
    assert len(val_rows) == len(val_set)


def test_kill_9_and_resume_gives_the_same_losses_bitwise(reference, pipeline, tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen(trainer_command(pipeline, run), cwd=tmp_path, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (run / "metrics.jsonl").exists() and any(r["step"] >= 25 for r in _whole_lines(run)):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished or failed before it could be killed: " + \
        process.stderr.read().decode()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    process.stderr.close()
    assert not (run / "done.json").exists()
    assert sorted(os.listdir(run / "checkpoints"))[-1] == "step-000020"
    assert max(r["step"] for r in _whole_lines(run)) > 20  # steps done after the checkpoint, to be redone

    done = subprocess.run(trainer_command(pipeline, run), cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert curve(run) == curve(reference)  # every loss, learning rate and gradient norm, bitwise
    final = torch.load(run / "checkpoints" / "step-000060" / "model.pt", weights_only=True)
    expected = torch.load(reference / "checkpoints" / "step-000060" / "model.pt", weights_only=True)
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def _whole_lines(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_match_one_rank(short_reference, pipeline, tmp_path, parallel):
    run = tmp_path / "run"
    sets = [*SHORT, "micro_batch=4", f"parallel={parallel}"]
    if parallel == "ddp":  # torchrun as users write it
        command = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   *trainer_command(pipeline, run, *sets)[1:]]
    else:  # curate train --nproc 2 starts torchrun itself
        command = [str(Path(PYTHON).parent / "curate"), "train", "--nproc", "2",
                   *trainer_command(pipeline, run, *sets)[3:]]
    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    ours, ref = metrics(run), metrics(short_reference)
    assert len(ours) == 20 + 2 * 3
    assert [(r["kind"], r["step"], r.get("component")) for r in ours] == \
        [(r["kind"], r["step"], r.get("component")) for r in ref]
    for a, b in zip(ours, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-5), (a, b)
        if a["kind"] == "train":
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)


# ---------------------------------------------------------------------------------------------------- Hugging Face


def _tiny_hf_llama(folder: Path, vocab: int, tokenizer: str | None, tie: bool = False, seed: int = 0):
    from curate.tokenizers.export_hf import import_transformers

    transformers = import_transformers()
    torch.manual_seed(seed)
    hf_config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=160,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, rope_theta=50000.0, rms_norm_eps=1e-5,
                                         tie_word_embeddings=tie)
    model = transformers.LlamaForCausalLM(hf_config).eval()
    model.save_pretrained(str(folder))
    if tokenizer:
        shutil.copyfile(tokenizer, folder / "tokenizer.model")
    return model


def test_vocabulary_growth_keeps_base_rows_and_base_logits(pipeline, tmp_path):
    import sentencepiece as spm

    from curate.trainer.hf import load_pretrained, old_tokenization

    base = spm.SentencePieceProcessor(model_file=pipeline["base"])
    ext = spm.SentencePieceProcessor(model_file=pipeline["ext"])
    n_base, n_ext = base.get_piece_size(), ext.get_piece_size()
    assert n_ext > n_base + 500
    hf = _tiny_hf_llama(tmp_path / "hf", n_base, pipeline["base"])
    args, state, report = load_pretrained(str(tmp_path / "hf"), pipeline["ext"], n_ext, 64)
    assert report["added_pieces"] == n_ext - n_base and args.vocab_size == -(-n_ext // 64) * 64
    embed, output = hf.model.embed_tokens.weight.detach(), hf.lm_head.weight.detach()
    assert torch.equal(state["tok_embeddings.weight"][:n_base], embed)
    assert torch.equal(state["output.weight"][:n_base], output)
    # a new piece starts as the mean of the base rows of its text's base tokenization
    pieces = old_tokenization(pipeline["base"], pipeline["ext"], n_base, n_ext)
    for new_id in (n_base, n_ext - 1, n_base + max(range(len(pieces)), key=lambda k: len(pieces[k]))):
        old = pieces[new_id - n_base]
        assert old and max(old) < n_base
        assert base.decode(old).strip() == ext.id_to_piece(new_id).replace("\u2581", " ").strip()
        assert torch.allclose(state["tok_embeddings.weight"][new_id], embed[old].mean(0))
        assert torch.allclose(state["output.weight"][new_id], output[old].mean(0))

    # text made of base tokens only: the grown model's logits over the base vocabulary are the old model's
    english = "It was the best of times, it was the worst of times."
    tokens = ext.encode(english)
    assert tokens == base.encode(english) and max(tokens) < n_base
    grown = Transformer(args).eval()
    grown.load_state_dict(state)
    with torch.no_grad():
        before = hf(torch.tensor([tokens])).logits
        after = grown(torch.tensor([tokens]))
    assert torch.allclose(after[..., :n_base], before, atol=1e-5, rtol=0)


def test_continued_pretraining_embeddings_first_then_export_untied(pipeline, tmp_path):
    from curate.tokenizers.export_hf import import_transformers

    import sentencepiece as spm

    from curate.trainer.hf import load_pretrained

    _tiny_hf_llama(tmp_path / "hf", spm.SentencePieceProcessor(model_file=pipeline["base"]).get_piece_size(),
                   pipeline["base"])
    run = tmp_path / "run"
    train(config(pipeline, f"init_from={tmp_path / 'hf'}", "embeddings_only_steps=2", "max_steps=4",
                 "checkpoint_every=2", "eval_every=4", "warmup_steps=1"), str(run), progress=False)
    args = ModelArgs(**json.loads((run / "config.json").read_text())["model"])
    n_ext = spm.SentencePieceProcessor(model_file=pipeline["ext"]).get_piece_size()
    _, grown, _ = load_pretrained(str(tmp_path / "hf"), pipeline["ext"], n_ext, 64)
    step2 = torch.load(run / "checkpoints" / "step-000002" / "model.pt", weights_only=True)
    step4 = torch.load(run / "checkpoints" / "step-000004" / "model.pt", weights_only=True)
    body = [k for k in step2 if k not in ("tok_embeddings.weight", "output.weight")]
    assert all(torch.equal(step2[k], grown[k]) for k in body)  # stage 1: the body is frozen
    assert not torch.equal(step2["tok_embeddings.weight"], grown["tok_embeddings.weight"])
    assert not torch.equal(step2["output.weight"], grown["output.weight"])
    assert not all(torch.equal(step4[k], step2[k]) for k in body)  # stage 2: everything trains
    assert args.tie_embeddings is False

    result = invoke("train", "export", str(run), "--output", str(tmp_path / "export"))
    assert result.exit_code == 0, result.output
    transformers = import_transformers()
    exported = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "export")).eval()
    ours = Transformer(args).eval()
    ours.load_state_dict(step4)
    tokens = torch.randint(0, n_ext, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(exported(tokens).logits, ours(tokens), atol=1e-4, rtol=0)


def test_export_round_trip_with_transformers(reference, pipeline, tmp_path):
    import sentencepiece as spm

    from curate.tokenizers.export_hf import import_transformers

    out = tmp_path / "hf"
    result = invoke("train", "export", str(reference), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer.json"} <= set(os.listdir(out))
    transformers = import_transformers()
    hf = transformers.LlamaForCausalLM.from_pretrained(str(out)).eval()
    run_config = json.loads((reference / "config.json").read_text())
    ours = Transformer(ModelArgs(**run_config["model"])).eval()
    ours.load_state_dict(torch.load(reference / "checkpoints" / "step-000060" / "model.pt", weights_only=True))
    text = "The Rabbit-Hole went straight on like a tunnel. 北京是中华人民共和国的首都。"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model")).encode(text)
    with torch.no_grad():
        theirs, mine = hf(torch.tensor([ids])).logits, ours(torch.tensor([ids]))
    assert (theirs - mine).abs().max().item() < 1e-4
    assert hf.config.tie_word_embeddings and hf.config.vocab_size == run_config["model"]["vocab_size"]

    again = invoke("train", "export", str(reference), "--output", str(out))
    assert again.exit_code == 2 and "--overwrite" in again.output
    missing = invoke("train", "export", str(reference), "--output", str(out), "--step", "20", "--overwrite")
    assert missing.exit_code == 1 and "no checkpoint of step 20 (have: 40, 60)" in missing.output


# ---------------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("sets, message", [
    (["seq_len=128"], "seq_len: 128 is longer than the mixture's samples (64 tokens"),
    (["device=cuda"], "device: cuda, but no CUDA GPU is visible"),
    (["micro_batch=3"], "micro_batch: 16 samples per step"),
    (["max_steps=1000"], "max_steps: 1000 steps of 16 samples"),
    (["global_batch_tokens=1000"], "global_batch_tokens: 1000 is not a multiple of seq_len 64"),
    (["precision=bf16", "device=cpu"], "precision: bf16 is for GPUs"),
])
def test_bad_config_exits_2_and_writes_nothing(pipeline, tmp_path, sets, message):
    if "device=cuda" in sets and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    result = cli_train(pipeline, tmp_path / "run", *sets)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_no_mixture_is_a_usage_error(tmp_path):
    result = invoke("train", "--output", str(tmp_path / "run"))
    assert result.exit_code == 2 and "--mixture" in result.output


def test_resume_refuses_another_mixture_or_config(reference, pipeline, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    other = cli_train(pipeline, run, mixture="mix-b")
    assert other.exit_code == 2 and "a different mixture" in other.output
    changed = cli_train(pipeline, run, "lr=1e-3")
    assert changed.exit_code == 2 and "lr was 0.003, now 0.001" in changed.output


def test_mixture_vocabulary_must_fit_the_pretrained_model(pipeline, tmp_path):
    _tiny_hf_llama(tmp_path / "hf", 600, tokenizer=None)  # no tokenizer.model to grow from
    result = cli_train(pipeline, tmp_path / "run", f"init_from={tmp_path / 'hf'}")
    assert result.exit_code == 2, result.output
    n_ext = json.loads((Path(pipeline["mix"]) / "mixture.json").read_text())["vocab_size"]
    assert f"has {n_ext} pieces but the model only 600 rows" in result.output
    not_llama = tmp_path / "not-llama"
    not_llama.mkdir()
    (not_llama / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    result = cli_train(pipeline, tmp_path / "run2", f"init_from={not_llama}")
    assert result.exit_code == 2 and "model_type: expected 'llama', got 'gpt2'" in result.output


def _copy_to_step_40(reference, run: Path) -> Path:
    shutil.copytree(reference, run)
    shutil.rmtree(run / "checkpoints" / "step-000060")
    (run / "done.json").unlink()
    return run / "checkpoints" / "step-000040"


def test_missing_or_truncated_checkpoint_file_is_named(reference, pipeline, tmp_path):
    folder = _copy_to_step_40(reference, tmp_path / "run")
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2])
    result = cli_train(pipeline, tmp_path / "run")
    assert result.exit_code == 1
    assert f"{folder / 'model.pt'}: truncated or changed" in result.output
    assert f"delete {folder} to start the run again from step 0" in result.output  # no older checkpoint kept
    (folder / "optimizer.pt").unlink()
    (folder / "model.pt").write_bytes(data)
    result = cli_train(pipeline, tmp_path / "run")
    assert result.exit_code == 1 and f"{folder / 'optimizer.pt'}: missing" in result.output
    assert "Traceback" not in result.output


def test_nan_loss_stops_at_that_step_without_a_checkpoint(reference, pipeline, tmp_path):
    run = tmp_path / "run"
    folder = _copy_to_step_40(reference, run)
    state = torch.load(folder / "model.pt", weights_only=True)
    state["layers.0.attention.wq.weight"][0, 0] = float("nan")  # as a diverged run would have left it
    torch.save(state, folder / "model.pt")
    meta = json.loads((folder / "state.json").read_text())
    meta["files"]["model.pt"] = (folder / "model.pt").stat().st_size
    (folder / "state.json").write_text(json.dumps(meta))
    result = cli_train(pipeline, run)
    assert result.exit_code == 1, result.output
    assert "step 41: the loss is nan" in result.output and "step-000040" in result.output
    assert sorted(os.listdir(run / "checkpoints")) == ["step-000040"]
    assert max(r["step"] for r in metrics(run)) == 40 and not (run / "done.json").exists()


OOM_HARNESS = """
import resource, runpy, sys
import torch, curate.trainer.train, curate.mixtures  # import first, then leave 1 GiB of address space
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
sys.argv = ["curate.trainer", *sys.argv[1:]]
runpy.run_module("curate.trainer", run_name="__main__")
"""


def test_out_of_memory_names_the_micro_batch(pipeline, tmp_path):
    run = tmp_path / "run"
    command = [PYTHON, "-c", OOM_HARNESS, *trainer_command(pipeline, run, "global_batch_tokens=131072",
                                                            "micro_batch=2048", "max_steps=1")[3:]]
    done = subprocess.run(command, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "out of memory on cpu with micro_batch=2048" in done.stderr
    assert "--set micro_batch=1024" in done.stderr and "Traceback" not in done.stderr
    assert not (run / "checkpoints").exists() and not (run / "done.json").exists()


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoTorch())
from curate.cli import main
sys.argv = ["curate", *sys.argv[1:]]
main()
"""


def test_without_torch_curate_works_and_train_says_how_to_install(tmp_path):
    def curate(*args):
        return subprocess.run([PYTHON, "-c", BLOCK_TORCH, *args], cwd=tmp_path, env=subprocess_env(),
                              capture_output=True, text=True, timeout=120)

    assert curate("--help").returncode == 0
    assert curate("train", "--help").returncode == 0
    done = curate("train", "--mixture", "m", "--output", "o")
    assert done.returncode == 2 and "pip install 'curate[train]'" in done.stderr
    assert curate("train", "export", str(tmp_path), "--output", "x").returncode == 2
