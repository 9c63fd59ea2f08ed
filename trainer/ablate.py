"""Data ablations: the same small model trained on two or more mixtures at one token budget, compared.

``curate ablate raw=MIX_A curated=MIX_B --tokens 50M --eval heldout.jsonl --output DIR`` is, in order:

1. **Plan** (nothing is written until every check passes): each ``NAME=PATH`` is a ``curate mix`` folder,
   or a mixture file that is built into ``DIR/mixtures/NAME`` with its budget set to ``--tokens``; all must
   share one tokenizer (sha256) and the training sequence length; the budget must be whole optimizer steps
   (``global_batch_tokens``) and each mixture must hold that many training samples; the evaluation sets are
   read and tokenized with that tokenizer.
2. **Train** each mixture with each seed as a ``curate train`` run in ``DIR/NAME-seedK``: one config
   (``DIR/train.yaml``) for all, ``max_steps`` = tokens / global_batch_tokens, the seed the only
   difference between seeds and the mixture the only difference between mixtures. A run that exists
   resumes from its last checkpoint (exactly, see trainer/train.py); a finished one is left alone.
3. **Evaluate** every finished run on every evaluation set and on the first ``val_samples`` samples of
   every mixture's validation split, per document (``evaluate.py``); the scores of a run and a set are kept
   in ``DIR/evals/NAME-seedK/SET.parquet`` (one row per unit: id, tokens, bytes, nats), reused while the
   run's checkpoint and the set are the same.
4. **Compare** (``compare.py``) and write ``DIR/results.json`` and ``DIR/results.parquet``.

A killed ablation rerun with the same command picks up where it stopped: finished runs and their scores
are reused, an unfinished run resumes from its checkpoint. ``DIR/ablation.json`` records the budget and
the training config; a rerun with another one is refused (its runs would not be comparable), while
adding a mixture or an evaluation set to a finished ablation trains or scores only what is new.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from curate.params import ConfigError
from curate.trainer.config import RESUMABLE_CHANGES, TrainConfig, config_diff, load_train_config
from curate.trainer.evalsets import EvalSet, Pieces, document_ids, load_eval_set, split_spec, validation_set

FORMAT_VERSION = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
RESERVED = {"evals", "mixtures"}
#: Keys the ablation sets on every run itself (so they are not part of the shared config).
PER_RUN = ("mixture", "seed", "max_steps")
RESULT_COLUMNS = ("eval_set", "mixture", "seed", "loss", "bits_per_byte", "delta_vs_first", "ci_low", "ci_high",
                  "verdict", "loss_std", "delta_bits_per_byte", "ci_method", "units", "tokens", "bytes", "run")


@dataclass
class AblateParams:
    tokens: int
    """Training tokens per run (every mixture, every seed)."""
    seeds: int = 3
    """Runs per mixture, seeds ``seed``, ``seed + 1`` … of the training config."""
    val_samples: int = 256
    """Samples of each mixture's validation split scored (0: none)."""
    resamples: int = 2000
    """Bootstrap resamples over evaluation units."""
    confidence: float = 0.95
    """Level of the intervals: 0.9, 0.95 or 0.99."""

    def validate(self) -> None:
        if self.tokens < 1:
            raise ValueError("tokens: must be at least 1")
        if self.seeds < 1:
            raise ValueError("seeds: must be at least 1")
        if self.val_samples < 0:
            raise ValueError("val_samples: must be >= 0")
        if self.resamples < 100:
            raise ValueError("resamples: at least 100 (fewer make the interval's ends noise)")
        if self.confidence not in (0.9, 0.95, 0.99):
            raise ValueError("confidence: one of 0.9, 0.95, 0.99")


@dataclass
class Mixture:
    name: str
    path: str
    """The mixture folder (for a mixture file: DIR/mixtures/NAME, built when the ablation starts)."""
    meta: dict
    config_file: str | None = None
    """The mixture file it is built from, or None for a folder given as it is."""


@dataclass
class Run:
    mixture: Mixture
    seed: int

    @property
    def name(self) -> str:
        return f"{self.mixture.name}-seed{self.seed}"


@dataclass
class Plan:
    output: str
    params: AblateParams
    config: TrainConfig
    """The training config every run shares (without mixture, seed and max_steps)."""
    mixtures: list[Mixture]
    steps: int
    seq_len: int
    pieces: Pieces
    """The mixtures' tokenizer."""
    tokenizer_sha256: str
    eval_sets: list[EvalSet]
    seeds: list[int]
    merged_validation: dict[str, str] = field(default_factory=dict)
    """``val:NAME`` -> the identical validation set it was merged into."""

    @property
    def runs(self) -> list[Run]:
        return [Run(m, k) for m in self.mixtures for k in self.seeds]

    def settings(self) -> dict:
        """What makes runs comparable: the budget and the shared training config (minus what may change)."""
        shared = {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES and k not in PER_RUN}
        return {"tokens": self.params.tokens, "steps": self.steps, "seq_len": self.seq_len,
                "tokenizer_sha256": self.tokenizer_sha256, "train": shared}


# ------------------------------------------------------------------------------------------------ planning


def _mixture_specs(specs: list[str], output: str, tokens: int, seq_len: int | None) -> list[Mixture]:
    if len(specs) < 2:
        raise ConfigError(f"an ablation compares two or more mixtures, got {len(specs)} (give NAME=MIX NAME=MIX …)",
                          key="MIXTURES")
    mixtures: list[Mixture] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ConfigError(f"expected NAME=MIX (a `curate mix` folder or a mixture file), got {spec!r}",
                              key="MIXTURES")
        if not NAME.match(name) or name in RESERVED:
            raise ConfigError(f"{name!r} is not a usable name (letters, digits and _ . + - , not "
                              f"{' or '.join(sorted(RESERVED))}): it names the run folders", key="MIXTURES")
        if any(m.name == name for m in mixtures):
            raise ConfigError(f"mixture name {name!r} is given twice", key="MIXTURES")
        if os.path.isdir(path):
            mixtures.append(Mixture(name, os.path.abspath(path), _open_mixture(path)))
        elif os.path.isfile(path):
            mixtures.append(_planned_build(name, path, output, tokens, seq_len))
        else:
            raise ConfigError(f"{path}: no such mixture folder or mixture file", key=name)
    return mixtures


def _open_mixture(path: str) -> dict:
    from curate.mixtures import MixtureDataset

    return MixtureDataset(path, split="train").meta  # MixtureError (a ConfigError) names the file and key


def _planned_build(name: str, path: str, output: str, tokens: int, seq_len: int | None) -> Mixture:
    """A mixture file, planned (dry run) with the ablation's budget; built when the ablation starts."""
    from curate.mixtures import load_config
    from curate.mixtures.build import build_mixture
    from curate.mixtures.documents import MixtureInputError

    config = load_config(path)
    samples = math.ceil(tokens / (seq_len or config.seq_len))
    config.tokens = samples * config.seq_len
    folder = os.path.join(os.path.abspath(output), "mixtures", name)
    try:
        meta = build_mixture(config, folder, dry_run=True)
    except MixtureInputError as err:
        raise ConfigError(str(err), file=path) from None
    return Mixture(name, folder, meta, config_file=os.path.abspath(path))


def _train_config(config_file: str | None, overrides: list[str], preset: str | None) -> TrainConfig:
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in PER_RUN:
            what = {"mixture": "the NAME=MIX arguments", "seed": "--seeds (seeds start at the config's seed)",
                    "max_steps": "--tokens"}[key]
            raise ConfigError(f"set by the ablation for each run from {what}", file="--set", key=key)
    config = load_train_config(config_file, list(overrides), extra={"model.preset": preset})
    for key in ("mixture", "max_steps"):
        if getattr(config, key) is not None:
            raise ConfigError(f"the ablation sets {key} for each run; leave it out of the config", file=config_file,
                              key=key)
    return config


def _budget(params: AblateParams, config: TrainConfig, mixtures: list[Mixture]) -> tuple[int, int]:
    """(steps, seq_len): whole optimizer steps of global_batch_tokens, and samples every mixture can give."""
    seq_lens = {m.name: int(m.meta["seq_len"]) for m in mixtures}
    seq_len = config.seq_len or min(seq_lens.values())
    if config.seq_len is None and len(set(seq_lens.values())) > 1:
        raise ConfigError("the mixtures have different seq_len (" + ", ".join(f"{k} {v}" for k, v in seq_lens.items())
                          + "): one schedule needs one; --set seq_len=N (at most the shortest) trains all on N",
                          key="seq_len")
    for name, n in seq_lens.items():
        if seq_len > n:
            raise ConfigError(f"{seq_len} is longer than mixture {name}'s samples ({n} tokens)", key="seq_len")
    batch = config.global_batch_tokens
    if batch % seq_len:
        raise ConfigError(f"{batch} is not a multiple of seq_len {seq_len}", key="global_batch_tokens")
    if params.tokens % batch:
        low, high = params.tokens // batch * batch, (params.tokens // batch + 1) * batch
        raise ConfigError(f"{params.tokens:,} tokens is not a whole number of optimizer steps of "
                          f"global_batch_tokens {batch:,}: use {low:,} or {high:,}"
                          + ("" if low else " (or lower global_batch_tokens)"), key="--tokens")
    steps = params.tokens // batch
    needed = steps * (batch // seq_len)
    for m in mixtures:
        have = int(m.meta["train_samples"])
        if have >= needed:
            continue
        caps = sum(math.floor(c["max_epochs"] * c["tokens_available"] / m.meta["seq_len"])
                   for c in m.meta["components"])
        where = os.path.join(m.path, "mixture.json")
        if caps < needed:
            raise ConfigError(f"{params.tokens:,} tokens ({needed:,} samples of {seq_len}) are more than mixture "
                              f"{m.name} can give under its max_epochs ({caps * m.meta['seq_len']:,} tokens): raise "
                              "max_epochs, add data, or lower --tokens", file=where, key="components")
        raise ConfigError(f"mixture {m.name} was built for {int(m.meta['tokens']):,} tokens ({have:,} samples), fewer "
                          f"than the {params.tokens:,} asked ({needed:,} samples of {seq_len}): rebuild it with "
                          f"tokens: {params.tokens} (its max_epochs allow up to {caps * m.meta['seq_len']:,}), or "
                          "give the mixture file instead of the folder", file=where, key="tokens")
    return steps, seq_len


def plan_ablation(mixture_specs: list[str], eval_specs: list[str], params: AblateParams, output: str, *,
                  config_file: str | None = None, overrides: list[str] = (), preset: str | None = None) -> Plan:
    """Check everything and read the evaluation sets; write nothing."""
    try:
        params.validate()
    except ValueError as err:
        option, _, message = str(err).partition(": ")
        raise ConfigError(message, key="--" + option.replace("_", "-")) from None
    config = _train_config(config_file, list(overrides), preset)
    mixtures = _mixture_specs(list(mixture_specs), output, params.tokens, config.seq_len)
    first = mixtures[0]
    for m in mixtures[1:]:
        if m.meta.get("tokenizer_sha256") != first.meta.get("tokenizer_sha256"):
            raise ConfigError(f"mixture {m.name} was tokenized with {m.meta.get('tokenizer')} (sha256 "
                              f"{str(m.meta.get('tokenizer_sha256'))[:12]}…), {first.name} with "
                              f"{first.meta.get('tokenizer')} ({str(first.meta.get('tokenizer_sha256'))[:12]}…): "
                              "losses over different token ids are not comparable; tokenize both with one tokenizer",
                              file=m.config_file or os.path.join(m.path, "mixture.json"), key="tokenizer_sha256")
    steps, seq_len = _budget(params, config, mixtures)
    if not eval_specs:
        raise ConfigError("give at least one held-out evaluation set (--eval PATH: a token folder, or JSONL/txt "
                          "text) that none of the mixtures trains on", key="--eval")
    sha = first.meta["tokenizer_sha256"]
    pieces = Pieces(first.meta["tokenizer"], sha, first.config_file or os.path.join(first.path, "mixture.json"))
    eos_id = int(first.meta["eos_id"])
    eval_sets: list[EvalSet] = []
    for spec in eval_specs:
        name, path = split_spec(spec, "--eval")
        evalset = load_eval_set(name, path, pieces, sha, eos_id)
        if evalset.name.startswith("val:") or any(e.name == evalset.name for e in eval_sets):
            raise ConfigError(f"evaluation set name {evalset.name!r} is taken; name it: --eval NAME=PATH",
                              key="--eval")
        eval_sets.append(evalset)
    plan = Plan(os.path.abspath(output), params, config, mixtures, steps, seq_len, pieces, sha, eval_sets,
                list(range(config.seed, config.seed + params.seeds)))
    for m in mixtures:
        if m.config_file is None:  # a mixture file is built (and its validation split known) when the run starts
            _add_validation(plan, m)
    return plan


def _add_validation(plan: Plan, mixture: Mixture) -> None:
    """The mixture's validation split as an evaluation set (``val:NAME``), when it has one."""
    if not plan.params.val_samples:
        return
    evalset = validation_set(f"val:{mixture.name}", mixture.path, plan.params.val_samples, plan.seq_len, plan.pieces)
    if evalset is None:
        return
    same = next((e for e in plan.eval_sets if e.kind == "val" and e.fingerprint() == evalset.fingerprint()), None)
    if same is not None:  # mixtures of the same documents with other weights hold out the same samples
        same.notes.append(f"also the validation split of {mixture.name} (the same samples)")
        plan.merged_validation[evalset.name] = same.name
        return
    plan.eval_sets.append(evalset)


def check_overlap(plan: Plan) -> dict[str, dict[str, int]]:
    """Evaluation set -> mixture -> documents of the set that the mixture trains on (matched by id).

    A held-out set must be held out of every mixture; a mixture's own validation documents never are in its
    training split, but another mixture of the same token folders may train on them.
    """
    trained = {m.name: document_ids(m.path, "train") for m in plan.mixtures}
    val_ids = {f"val:{m.name}": document_ids(m.path, "val") for m in plan.mixtures}
    return {e.name: {name: len(ids.intersection(val_ids.get(e.name, e.ids))) for name, ids in trained.items()}
            for e in plan.eval_sets}


# ------------------------------------------------------------------------------------------------ running


class _Lock:
    """One ablation at a time in a folder: an ``flock`` on DIR/.ablate.lock that dies with its process."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, ".ablate.lock")

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise AblateError(f"{os.path.dirname(self.path)}: another curate ablate is working in this "
                              "folder") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


class AblateError(RuntimeError):
    """A failure while training or evaluating; ``exit_code`` is what the command line returns."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _write_json(obj, path: str) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=_plain)
    os.replace(path + ".tmp", path)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _check_settings(plan: Plan) -> None:
    path = os.path.join(plan.output, "ablation.json")
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError("unreadable; move the folder away or use another --output", file=path) from None
    changed = config_diff(old, plan.settings())
    if changed:
        def value(d, dotted):
            for part in dotted.split("."):
                d = d.get(part) if isinstance(d, dict) else None
            return d
        detail = "; ".join(f"{k} was {value(old, k)!r}, now {value(plan.settings(), k)!r}" for k in changed[:3])
        raise ConfigError(f"{plan.output} holds an ablation with other settings ({detail}): its runs would not be "
                          "comparable with new ones; use another --output", file=path, key=changed[0])


def _shared_config_file(plan: Plan) -> str:
    """DIR/train.yaml: the one training config of every run (the per-run keys come on the command line)."""
    body = {k: v for k, v in plan.config.to_dict().items() if v is not None and k not in PER_RUN}
    body["model"] = {k: v for k, v in body["model"].items() if v is not None}
    path = os.path.join(plan.output, "train.yaml")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("# The training config every run of this ablation shares; `curate ablate` sets mixture, seed\n"
                "# and max_steps (= tokens / global_batch_tokens) per run.\n")
        yaml.safe_dump(body, f, sort_keys=False)
    os.replace(path + ".tmp", path)
    return path


def _run_overrides(plan: Plan, run: Run) -> list[str]:
    return [f"seed={run.seed}", f"max_steps={plan.steps}"]


def train_run(plan: Plan, run: Run, config_path: str, *, nproc: int, progress: bool) -> dict:
    """Train (or resume, or leave alone) one run; its summary."""
    folder = os.path.join(plan.output, run.name)
    if nproc > 1:
        args = [sys.executable, "-m", "curate.cli", "train", "run", config_path, "--mixture", run.mixture.path,
                "--output", folder, "--nproc", str(nproc)]
        for item in _run_overrides(plan, run):
            args += ["--set", item]
        if not progress:
            args.append("--no-progress")
        code = subprocess.call(args, env={**os.environ, "PYTHONSAFEPATH": "1"})
        if code:
            raise AblateError(f"training {run.name} failed (curate train exited with {code}); rerun to resume",
                              exit_code=code)
        with open(os.path.join(folder, "done.json"), encoding="utf-8") as f:
            return json.load(f)
    from curate.trainer.train import TrainError, train

    config = load_train_config(config_path, _run_overrides(plan, run), extra={"mixture": run.mixture.path})
    try:
        return train(config, folder, progress=progress)
    except TrainError as err:
        raise AblateError(f"{run.name}: {err}", exit_code=err.exit_code) from None


def _eval_file(plan: Plan, run: Run, evalset: EvalSet) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", evalset.name)
    return os.path.join(plan.output, "evals", run.name, f"{safe}.parquet")


def score_run(plan: Plan, run: Run, device) -> dict[str, np.ndarray]:
    """Nats per unit of every evaluation set for one finished run, from the cache or computed and cached."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from curate.trainer.evaluate import EvalError, final_checkpoint, load_model, score

    folder = os.path.join(plan.output, run.name)
    try:
        step, _, state = final_checkpoint(folder)
    except EvalError as err:
        raise AblateError(str(err)) from None
    out, missing = {}, []
    for e in plan.eval_sets:
        key = json.dumps({"step": step, "checkpoint_time": state.get("time"), "eval": e.fingerprint()})
        path = _eval_file(plan, run, e)
        if os.path.isfile(path):
            table = pq.read_table(path)
            if (table.schema.metadata or {}).get(b"curate.ablate") == key.encode():
                out[e.name] = table["nats"].to_numpy()
                continue
        missing.append((e, key, path))
    if not missing:
        return out
    try:
        model, seq_len, _ = load_model(folder, device)
    except EvalError as err:
        raise AblateError(str(err)) from None
    threads = torch.get_num_threads()
    if plan.config.threads:
        torch.set_num_threads(plan.config.threads)
    try:
        for e, key, path in missing:
            nats = score(model, e, seq_len, device, batch=max(plan.config.micro_batch, 8))
            table = pa.table({"id": pa.array(e.ids, pa.string()), "tokens": pa.array(e.tokens),
                              "bytes": pa.array(e.bytes), "nats": pa.array(nats)})
            table = table.replace_schema_metadata({"curate.ablate": key})
            os.makedirs(os.path.dirname(path), exist_ok=True)
            pq.write_table(table, path + ".tmp")
            os.replace(path + ".tmp", path)
            out[e.name] = nats
    finally:
        torch.set_num_threads(threads)
    return out


def results(plan: Plan, nats: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Rows of results.parquet: per evaluation set, mixture and seed, and a summary row per mixture."""
    from curate.trainer.compare import Scores, compare

    rows = []
    for e in plan.eval_sets:
        scores = {m.name: {k: Scores(nats[Run(m, k).name][e.name], e.tokens, e.bytes) for k in plan.seeds}
                  for m in plan.mixtures}
        for row in compare(scores, confidence=plan.params.confidence, resamples=plan.params.resamples):
            run = None if row["seed"] is None else f"{row['mixture']}-seed{row['seed']}"
            rows.append({"eval_set": e.name, **row, "run": run})
    return [{c: r.get(c) for c in RESULT_COLUMNS} for r in rows]


def write_results(plan: Plan, rows: list[dict], runs: dict[str, dict], overlap: dict, notes: list[str],
                  seconds: float) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("eval_set", pa.string()), ("mixture", pa.string()), ("seed", pa.int64()),
                        ("loss", pa.float64()), ("bits_per_byte", pa.float64()), ("delta_vs_first", pa.float64()),
                        ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("verdict", pa.string()),
                        ("loss_std", pa.float64()), ("delta_bits_per_byte", pa.float64()),
                        ("ci_method", pa.string()), ("units", pa.int64()), ("tokens", pa.int64()),
                        ("bytes", pa.int64()), ("run", pa.string())])
    path = os.path.join(plan.output, "results.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path + ".tmp")
    os.replace(path + ".tmp", path)
    body = {
        "format_version": FORMAT_VERSION, "tokens": plan.params.tokens, "steps": plan.steps, "seq_len": plan.seq_len,
        "global_batch_tokens": plan.config.global_batch_tokens, "seeds": plan.seeds,
        "model": plan.config.model.shape(), "confidence": plan.params.confidence,
        "tokenizer": plan.pieces.path, "tokenizer_sha256": plan.tokenizer_sha256,
        "baseline": plan.mixtures[0].name,
        "mixtures": [{"name": m.name, "path": m.path, "built_from": m.config_file, "fingerprint": m.meta["fingerprint"],
                      "train_samples": m.meta["train_samples"],
                      "components": [{k: c.get(k) for k in ("name", "tokens_available", "weight_realized", "epochs")}
                                     for c in m.meta["components"]]} for m in plan.mixtures],
        "eval_sets": [{**e.describe(), "documents_trained_on": overlap.get(e.name, {})} for e in plan.eval_sets],
        "verdicts": {e.name: [r["verdict"] for r in rows if r["eval_set"] == e.name and r["seed"] is None]
                     for e in plan.eval_sets},
        "notes": notes, "runs": runs, "rows": rows, "seconds": round(seconds, 2),
    }
    _write_json(body, os.path.join(plan.output, "results.json"))
    return body


def run_ablation(plan: Plan, *, nproc: int = 1, progress: bool = True, echo=print) -> dict:
    """Build planned mixtures, train every run, score it, compare; returns results.json's content."""
    started = time.time()
    os.makedirs(plan.output, exist_ok=True)
    with _Lock(plan.output):
        _check_settings(plan)
        _write_json({"format_version": FORMAT_VERSION, "settings": plan.settings(),
                     "mixtures": {m.name: m.config_file or m.path for m in plan.mixtures},
                     "seeds": plan.seeds}, os.path.join(plan.output, "ablation.json"))
        for m in plan.mixtures:
            if m.config_file is not None:
                _build(plan, m, echo)
        config_path = _shared_config_file(plan)
        overlap = check_overlap(plan)
        notes = [f"warning: {n:,} documents of evaluation set {set_name} are in mixture {name}'s training split "
                 "(same id): that set is not held out of it" for set_name, counts in overlap.items()
                 for name, n in counts.items() if n]
        notes += [f"{merged} is the same set of samples as {kept}: scored once, as {kept}"
                  for merged, kept in plan.merged_validation.items()]
        for note in notes:
            echo(note)
        if plan.config.warmup_steps >= plan.steps:
            echo(f"note: warmup_steps {plan.config.warmup_steps} >= {plan.steps} steps: the learning rate never "
                 f"reaches its peak (--set warmup_steps=N)")
        device = _eval_device(plan.config)
        nats: dict[str, dict[str, np.ndarray]] = {}
        runs: dict[str, dict] = {}
        for i, run in enumerate(plan.runs, 1):
            t0 = time.time()
            echo(f"[{i}/{len(plan.runs)}] {run.name}: {plan.params.tokens:,} tokens on {run.mixture.path}")
            summary = train_run(plan, run, config_path, nproc=nproc, progress=progress)
            t1 = time.time()
            nats[run.name] = score_run(plan, run, device)
            runs[run.name] = {"folder": os.path.join(plan.output, run.name), "mixture": run.mixture.name,
                              "seed": run.seed, "train_loss": summary.get("loss"), "val": summary.get("val"),
                              "train_seconds": summary.get("seconds"), "eval_seconds": round(time.time() - t1, 2),
                              "already_complete": bool(summary.get("already_complete"))}
            trained = "already trained" if summary.get("already_complete") else "trained"
            echo(f"      {trained} (train loss {summary.get('loss', float('nan')):.4f}, {t1 - t0:.0f}s), "
                 f"scored in {time.time() - t1:.1f}s")
        rows = results(plan, nats)
        return write_results(plan, rows, runs, overlap, notes, time.time() - started)


def _build(plan: Plan, mixture: Mixture, echo) -> None:
    from curate.mixtures import load_config
    from curate.mixtures.build import build_mixture

    config = load_config(mixture.config_file)
    config.tokens = int(mixture.meta["tokens"])
    meta = build_mixture(config, mixture.path)
    echo(f"mixture {mixture.name}: {'reused' if meta['build']['reused'] else 'built'} {mixture.path} "
         f"({meta['train_samples']:,} training samples)")
    meta.pop("build")
    mixture.meta = meta
    _add_validation(plan, mixture)


def _eval_device(config: TrainConfig):
    import torch

    if config.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")
