"""`curate mix` on token folders in tokenize's format: GPT-3's table, caps, temperature, the sample order,
the reader (resume, rank slices, validation), fingerprints, and every bad input with its exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from curate.cli import main
from curate.mixtures import MixtureDataset, MixtureError
from curate.mixtures.allocate import apportion, blend, cap_targets, temperature_weights
from curate.mixtures.build import build_mixture
from curate.mixtures.config import from_dict, parse_tokens
from curate.params import ConfigError
from curate.tests.test_mixture_format import write_meta, write_shard, write_sized_source

#: GPT-3's Table 2.2 (Brown et al. 2020): tokens in billions, weight in the training mix, epochs elapsed at 300B.
GPT3 = [("Common Crawl (filtered)", "cc", 410, 0.60, 0.44), ("WebText2", "webtext2", 19, 0.22, 2.9),
        ("Books1", "books1", 12, 0.08, 1.9), ("Books2", "books2", 55, 0.08, 0.43),
        ("Wikipedia", "wikipedia", 3, 0.03, 3.4)]
SCALE = 10_000  # tokens per billion: 300B -> 3M


@pytest.fixture(scope="module")
def gpt3_tokens(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gpt3") / "tokens"
    write_meta(str(root))
    for i, (_, source, billions, _, _) in enumerate(GPT3):
        write_sized_source(str(root), source, billions * SCALE, mean_length=500, shards=2, seed=i)
    return root


def gpt3_config(tokens: Path, weights: list[float] | None = None, **extra) -> dict:
    weights = weights or [w for *_, w, _ in GPT3]
    return {"tokens": f"{300 * SCALE // 1000}K", "seq_len": 128, "validation": 0, "paths": [str(tokens)],
            "components": [{"name": name, "source": source, "weight": w}
                           for (name, source, *_), w in zip(GPT3, weights)], **extra}


def build(config: dict, output: Path, **kwargs) -> dict:
    return build_mixture(from_dict(config, file="mixture.yaml"), str(output), **kwargs)


def write_yaml(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


# -- the table ---------------------------------------------------------------------------------------------------

def test_gpt3_table_epochs_are_weight_times_budget_over_tokens(gpt3_tokens, tmp_path):
    # GPT-3's rounded weights sum to 1.01; one point less on Books1 (0.07) makes them a share of the budget
    weights = [0.60, 0.22, 0.07, 0.08, 0.03]
    meta = build(gpt3_config(gpt3_tokens, weights), tmp_path / "mix")
    rows = {c["name"]: c for c in meta["components"]}
    for (name, _, billions, _, _), weight in zip(GPT3, weights):
        row = rows[name]
        assert row["tokens_available"] == billions * SCALE
        assert row["weight_asked"] == pytest.approx(weight)
        assert row["weight_realized"] == pytest.approx(weight, abs=1 / meta["train_samples"])
        assert row["epochs"] == pytest.approx(weight * 300 / billions, abs=128 / (billions * SCALE))
        assert row["tokens_drawn"] == row["train_samples"] * 128
    assert round(rows["Common Crawl (filtered)"]["epochs"], 2) == 0.44
    assert round(rows["WebText2"]["epochs"], 2) == 3.47
    assert round(rows["Wikipedia"]["epochs"], 2) == 3.00
    assert sum(r["train_samples"] for r in rows.values()) == meta["train_samples"] == -(-3_000_000 // 128)
    assert len(MixtureDataset(tmp_path / "mix", split="val")) == 0  # validation: 0
    # the same table as Parquet for DuckDB
    import duckdb

    got = duckdb.sql(f"SELECT component, round(epochs, 2) FROM read_parquet('{tmp_path}/mix/mixture.parquet') "
                     "ORDER BY tokens_available DESC").fetchall()
    assert got[0] == ("Common Crawl (filtered)", 0.44)
    assert pq.read_table(tmp_path / "mix" / "mixture.parquet").column_names[:8] == [
        "component", "sources", "documents", "tokens_available", "weight_asked", "weight_realized", "tokens_drawn",
        "epochs"]


def test_gpt3_printed_weights_sum_to_101_percent(gpt3_tokens, tmp_path):
    with pytest.raises(ConfigError, match=r"weights sum to 1\.01.*normalize: true") as err:
        build(gpt3_config(gpt3_tokens), tmp_path / "mix")
    assert err.value.file == "mixture.yaml" and err.value.key == "components"
    meta = build(gpt3_config(gpt3_tokens, normalize=True), tmp_path / "mix")
    assert meta["weights"] == "normalized"
    cc = meta["components"][0]
    assert cc["weight_asked"] == pytest.approx(0.60)  # as written; the realized share is the normalized one
    assert cc["weight_realized"] == pytest.approx(0.60 / 1.01, abs=1e-4)
    assert cc["epochs"] == pytest.approx(0.60 / 1.01 * 300 / 410, abs=1e-4)


def test_cli_prints_the_table_and_dry_run_writes_nothing(gpt3_tokens, tmp_path):
    path = write_yaml(tmp_path / "mixture.yaml", gpt3_config(gpt3_tokens, [0.60, 0.22, 0.07, 0.08, 0.03]))
    result = CliRunner().invoke(main, ["mix", path, "--dry-run"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    for expected in ("epochs elapsed", "weight realized", "WebText2", "3.47", "0.44", "dry run"):
        assert expected in flat
    assert not (tmp_path / "mix").exists()
    result = CliRunner().invoke(main, ["mix", path, "--output", str(tmp_path / "mix")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mix" / "mixture.json").is_file()
    again = CliRunner().invoke(main, ["mix", path, "--output", str(tmp_path / "mix")])
    assert again.exit_code == 0 and "nothing to do" in again.output


# -- weights, caps, temperature ----------------------------------------------------------------------------------

def test_cap_redistributes_to_components_with_room(gpt3_tokens, tmp_path):
    # Wikipedia (30K tokens) at 20% of 3M would need 20 epochs; capped at 4, its surplus goes to the others
    weights = [0.40, 0.20, 0.10, 0.10, 0.20]
    meta = build(gpt3_config(gpt3_tokens, weights, max_epochs=4), tmp_path / "mix")
    rows = {c["name"]: c for c in meta["components"]}
    wiki = rows["Wikipedia"]
    assert wiki["capped"] and wiki["epochs"] == pytest.approx(4, abs=0.01)
    # WebText2 (190K) now wants 0.2/0.8 of 2.88M = 720K = 3.8 epochs: room left, not capped
    others = [r for r in rows.values() if not r["capped"]]
    assert len(others) == 4
    left = 3_000_000 - 4 * 30_000
    for r in others:
        share = r["weight_asked"] / sum(o["weight_asked"] for o in others)
        assert r["tokens_drawn"] == pytest.approx(share * left, abs=2 * 128)
    assert sum(r["tokens_drawn"] for r in rows.values()) == meta["train_samples"] * 128


def test_cap_cascades_and_unreachable_budget_is_an_error():
    targets, capped = cap_targets(np.array([0.5, 0.3, 0.2]), 100.0, np.array([10.0, 40.0, 1000.0]))
    # 0.5 -> capped at 10; the rest 90 split 0.3:0.2 = 54:36 -> the second capped at 40; the third takes 50
    assert capped.tolist() == [True, True, False]
    assert targets.tolist() == pytest.approx([10, 40, 50])
    with pytest.raises(ValueError, match="more than every component can give"):
        cap_targets(np.array([0.5, 0.5]), 100.0, np.array([10.0, 20.0]))


def test_unimax_with_equal_weights_is_uniform_redistribution():
    # UniMax: the budget shared uniformly, small languages capped at max_epochs × size, the rest spread evenly
    sizes = np.array([5.0, 20.0, 400.0, 1000.0])
    targets, capped = cap_targets(np.full(4, 0.25), 600.0, 2 * sizes)
    assert targets.tolist() == pytest.approx([10, 40, 275, 275])
    assert capped.tolist() == [True, True, False, False]


def test_temperature_weights(gpt3_tokens, tmp_path):
    config = gpt3_config(gpt3_tokens, temperature=3.3, max_epochs=100)
    for c in config["components"]:
        del c["weight"]
    meta = build(config, tmp_path / "mix")
    sizes = np.array([billions * SCALE for _, _, billions, _, _ in GPT3], dtype=float)
    expected = sizes ** (1 / 3.3) / (sizes ** (1 / 3.3)).sum()
    asked = [c["weight_asked"] for c in meta["components"]]
    assert asked == pytest.approx(expected.tolist())
    assert [c["weight_realized"] for c in meta["components"]] == pytest.approx(expected.tolist(), abs=1e-4)
    assert meta["weights"] == "temperature"
    assert temperature_weights(np.array([1.0, 1e6]), 1.0).tolist() == pytest.approx([1e-6, 1 - 1e-6], rel=1e-3)
    assert temperature_weights(np.array([1.0, 1e6]), 1e9).tolist() == pytest.approx([0.5, 0.5])


# -- the order ---------------------------------------------------------------------------------------------------

def megatron_reference(weights: list[float], samples: int) -> list[int]:
    """Megatron's build_blending_indices written out plainly (with i + 1 as the target count)."""
    counts = [0] * len(weights)
    out = []
    for i in range(samples):
        errors = [w * (i + 1) - n for w, n in zip(weights, counts)]
        best = errors.index(max(errors))
        counts[best] += 1
        out.append(best)
    return out


def test_blend_is_megatrons_greedy_rule_and_tracks_every_prefix():
    rng = np.random.default_rng(7)
    weights = rng.dirichlet(np.ones(6))
    n = 30_000
    counts = apportion(weights * n, n, np.full(6, n))
    assert counts.sum() == n and np.abs(counts - weights * n).max() < 1
    order = blend(counts)
    # the same choices as Megatron's rule in exact arithmetic, with w = counts / n (floating point can
    # break an exact tie either way; the integer form cannot)
    from fractions import Fraction

    assert order.tolist()[:5000] == megatron_reference([Fraction(int(c), n) for c in counts], 5000)
    assert np.bincount(order).tolist() == counts.tolist()  # exactly the counts asked for
    taken = np.cumsum(np.eye(6, dtype=np.int64)[order], axis=0)
    prefix = np.arange(1, n + 1)[:, None]
    assert np.abs(taken - weights[None, :] * prefix).max() < 2  # about one sample off, after every prefix
    shares = np.abs(taken / prefix - weights[None, :])[9_999:]
    assert shares.max() <= 0.001  # within 0.1% over every prefix of at least 10,000 samples
    assert blend(np.array([7])).tolist() == [0] * 7


def test_caps_hold_exactly_in_whole_samples():
    targets, capped = cap_targets(np.array([0.5, 0.5]), 100.0, np.array([30.0, 1000.0]))
    counts = apportion(targets, 100, np.array([30.0, 1000.0]))
    assert counts.tolist() == [30, 70] and capped.tolist() == [True, False]
    assert np.bincount(blend(counts)).tolist() == [30, 70]


def test_two_builds_are_byte_identical_and_a_change_is_detected(gpt3_tokens, tmp_path):
    config = gpt3_config(gpt3_tokens, [0.60, 0.22, 0.07, 0.08, 0.03], validation=0.05, seed=11)
    a, b = build(config, tmp_path / "a"), build(config, tmp_path / "b")
    assert a["fingerprint"] == b["fingerprint"]
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 20
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    # another seed: another fingerprint and another order, never a silent reuse of the old index
    with pytest.raises(ConfigError, match="other config.*--overwrite"):
        build({**config, "seed": 12}, tmp_path / "a")
    c = build({**config, "seed": 12}, tmp_path / "a", overwrite=True)
    assert c["fingerprint"] != a["fingerprint"]
    assert not np.array_equal(np.load(tmp_path / "a/train/c0.order.npy"), np.load(tmp_path / "b/train/c0.order.npy"))
    # the same order of components (weights unchanged): only the shuffles differ
    assert np.array_equal(np.load(tmp_path / "a/train/index.npy"), np.load(tmp_path / "b/train/index.npy"))


def test_changed_input_is_detected_by_reader_and_builder(tmp_path):
    root = tmp_path / "tokens"
    write_meta(str(root))
    write_sized_source(str(root), "web", 20_000, mean_length=200, seed=1)
    config = {"tokens": 10_000, "seq_len": 64, "paths": [str(root)], "validation": 0,
              "components": [{"source": "web", "weight": 1}]}
    build(config, tmp_path / "mix")
    assert len(MixtureDataset(tmp_path / "mix")) == -(-10_000 // 64)
    shard = next(root.glob("web/*.bin"))
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(MixtureError, match="changed since the mixture was built"):
        MixtureDataset(tmp_path / "mix")
    with pytest.raises(ConfigError, match="other inputs"):
        build(config, tmp_path / "mix")
    build(config, tmp_path / "mix", overwrite=True)
    assert len(MixtureDataset(tmp_path / "mix")) == -(-10_000 // 64)
    with pytest.raises(MixtureError, match="not a mixture"):
        MixtureDataset(tmp_path)
    (tmp_path / "mix" / "mixture.json").write_text("{")
    with pytest.raises(MixtureError, match="not valid JSON"):
        MixtureDataset(tmp_path / "mix")
    with pytest.raises(ConfigError, match="not valid JSON"):
        build(config, tmp_path / "mix")
    build(config, tmp_path / "mix", overwrite=True)
    assert len(MixtureDataset(tmp_path / "mix")) == -(-10_000 // 64)


# -- the reader --------------------------------------------------------------------------------------------------

def component_stream(mix: Path, c: int, split: str = "train") -> np.ndarray:
    """A component's packed token stream rebuilt from the index files with plain numpy (docs/mixture.md's recipe)."""
    meta = json.loads((mix / "mixture.json").read_text())
    docs = np.load(mix / "docs" / f"c{c}.npy")
    parts = []
    for shard, start, length, stored in docs[np.load(mix / split / f"c{c}.order.npy")]:
        entry = meta["shards"][shard]
        tokens = np.memmap(entry["path"], dtype=entry["dtype"], mode="r")[start:start + stored].astype(np.int64)
        parts.append(np.append(tokens, [meta["eos_id"]] * (length - stored)))
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def small_mix(tmp_path_factory) -> Path:
    """Three sources, short and long documents (a sample spans many, or lies inside one), one without EOS."""
    tmp = tmp_path_factory.mktemp("small")
    root = tmp / "tokens"
    write_meta(str(root), vocab_size=1000)
    write_sized_source(str(root), "short", 30_000, mean_length=20, shards=3, seed=1)
    write_sized_source(str(root), "long", 60_000, mean_length=900, shards=2, seed=2)
    write_sized_source(str(root), "noeos", 8_000, mean_length=50, shards=1, seed=3, eos=False)
    config = {"tokens": "150K", "seq_len": 100, "seed": 5, "validation": 0.1, "max_epochs": 10, "paths": [str(root)],
              "components": [{"source": "short", "weight": 0.3}, {"source": "long", "weight": 0.5},
                             {"source": "noeos", "weight": 0.2}]}
    build(config, tmp / "mix")
    return tmp / "mix"


def test_samples_are_the_packed_stream_and_every_epoch_a_permutation(small_mix):
    ds = MixtureDataset(small_mix)
    S = ds.seq_len
    index = np.load(small_mix / "train" / "index.npy")
    assert len(ds) == len(index) == -(-150_000 // S)
    for c, name in enumerate(ds.components):
        stream = component_stream(small_mix, c)
        rows = np.flatnonzero(index[:, 0] == c)
        assert len(rows) == ds.meta["components"][c]["train_samples"]
        for k, i in enumerate(rows):
            sample = ds[int(i)]
            assert sample.dtype == np.int64 and len(sample) == S + 1
            assert np.array_equal(sample, stream[k * S:k * S + S + 1]), (name, k)
            assert ds.component_of(int(i)) == name
        docs = pq.read_table(small_mix / "documents" / f"c{c}.parquet")
        n_train = docs["split"].to_pylist().count("train")
        order = np.load(small_mix / "train" / f"c{c}.order.npy")
        full = len(order) // n_train
        epochs = order[:full * n_train].reshape(full, n_train)
        for epoch in epochs:
            assert sorted(epoch.tolist()) == sorted(np.flatnonzero(np.array(docs["split"].to_pylist()) == "train"))
        if full > 1:
            assert not np.array_equal(epochs[0], epochs[1])  # a fresh shuffle per epoch
    # documents are separated by EOS even where the shard has none
    eos = ds.eos_id
    noeos = ds.components.index("noeos")
    stream = component_stream(small_mix, noeos)
    docs = np.load(small_mix / "docs" / f"c{noeos}.npy")
    assert (docs[:, 2] == docs[:, 3] + 1).all()
    assert (stream == eos).sum() == docs[np.load(small_mix / "train" / f"c{noeos}.order.npy"), 2].size


def test_reading_from_sample_k_equals_the_tail_of_the_full_pass(small_mix):
    full = MixtureDataset(small_mix)
    everything = full.batch(range(len(full)))
    k = 777
    resumed = MixtureDataset(small_mix)  # a fresh process would start here: nothing read before k
    tail = np.stack([resumed[i] for i in range(k, len(resumed))])
    assert np.array_equal(tail, everything[k:])
    assert np.array_equal(resumed[-1], everything[-1])
    with pytest.raises(IndexError):
        resumed[len(resumed)]


def test_rank_slices_are_disjoint_deterministic_and_covering(small_mix):
    ds = MixtureDataset(small_mix)
    world = 3
    seen = {}
    for rank in range(world):
        part = ds.shard(rank, world)
        again = MixtureDataset(small_mix).shard(rank, world)
        for j in range(len(part)):
            g = j * world + rank
            assert g not in seen
            seen[g] = rank
            if j % 37 == 0:
                assert np.array_equal(part[j], ds[g]) and np.array_equal(again[j], part[j])
                assert part.component_of(j) == ds.component_of(g)
    assert sorted(seen) == list(range(len(ds)))
    # global batch B on W ranks at step s: the union is exactly samples [s*B, (s+1)*B)
    B, step = 6, 4
    per = B // world
    union = sorted(j * world + r for r in range(world) for j in range(step * per, (step + 1) * per))
    assert union == list(range(step * B, (step + 1) * B))
    with pytest.raises(ValueError):
        ds.shard(3, 3)


def test_no_validation_document_in_any_training_sample(tmp_path):
    root = tmp_path / "tokens"
    write_meta(str(root), vocab_size=5000)
    # every token of document d is 10 + d: a sample's tokens name the documents it holds
    lengths = np.random.default_rng(0).integers(5, 120, size=3000)
    for part in range(2):
        rows = np.arange(part * 1500, (part + 1) * 1500)
        write_shard(str(root), "web", f"web-{part}", lengths[rows], seed=part,
                    ids=[f"doc-{d}" for d in rows])
        tokens_path = next(p for p in root.glob(f"web/web-{part}*.bin"))
        data = np.memmap(tokens_path, dtype=np.uint16, mode="r+")
        offsets = np.fromfile(str(tokens_path)[:-4] + ".idx", dtype=np.uint64).astype(np.int64)
        for i, d in enumerate(rows):
            data[offsets[i]:offsets[i + 1] - 1] = 10 + d
        data.flush()
        del data
    config = {"tokens": "300K", "seq_len": 64, "validation": 0.1, "max_epochs": 10, "paths": [str(root)],
              "components": [{"source": "web", "weight": 1}]}
    meta = build(config, tmp_path / "mix")
    docs = pq.read_table(tmp_path / "mix" / "documents" / "c0.parquet").to_pylist()
    val_docs = {int(r["id"][4:]) for r in docs if r["split"] == "val"}
    assert 200 < len(val_docs) < 400 and meta["components"][0]["val_documents"] == len(val_docs)
    from curate.tokenizers.corpus import unit_hash
    import pyarrow as pa

    u = unit_hash(pa.array([f"doc-{d}" for d in range(3000)]), 0)
    assert val_docs == set(np.flatnonzero(u < 0.1).tolist())
    train = MixtureDataset(tmp_path / "mix")
    seen = set()
    for i in range(len(train)):
        seen |= set((np.unique(train[i]) - 10).tolist())
    seen.discard(2 - 10)  # EOS
    assert not seen & val_docs
    assert len(seen) == 3000 - len(val_docs)  # about 4 epochs: every training document was seen
    val = MixtureDataset(tmp_path / "mix", split="val")
    assert len(val) == meta["components"][0]["val_samples"] > 0
    in_val = set()
    for i in range(len(val)):
        in_val |= set((np.unique(val[i]) - 10).tolist())
    in_val.discard(2 - 10)
    assert in_val <= val_docs


def test_validation_split_per_component(small_mix):
    val = MixtureDataset(small_mix, split="val")
    total = 0
    for c, name in enumerate(val.components):
        part = MixtureDataset(small_mix, split="val", component=name)
        assert len(part) == val.meta["components"][c]["val_samples"]
        total += len(part)
        stream = component_stream(small_mix, c, "val")
        for j in range(len(part)):
            assert part.component_of(j) == name
            assert np.array_equal(part[j], stream[j * 100:j * 100 + 101])
    assert total == len(val) > 0
    # interleaved: any prefix holds each component in proportion to its validation samples
    counts = np.array([c["val_samples"] for c in val.meta["components"]])
    half = len(val) // 2
    first_half = np.bincount([val.components.index(val.component_of(j)) for j in range(half)], minlength=len(counts))
    assert np.abs(first_half - counts * half / len(val)).max() < 2
    with pytest.raises(MixtureError, match="no component"):
        MixtureDataset(small_mix, split="val", component="nope")


def test_dataset_pickles_without_copying_token_maps(small_mix):
    import pickle

    ds = MixtureDataset(small_mix).shard(1, 2)
    first = ds[5]
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    assert np.array_equal(pickle.loads(blob)[5], first)


# -- bad input ---------------------------------------------------------------------------------------------------

def run_cli(tmp_path: Path, config: dict, *args) -> tuple[int, str]:
    path = write_yaml(tmp_path / "mixture.yaml", config)
    result = CliRunner().invoke(main, ["mix", path, "--output", str(tmp_path / "mix"), *args])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("change, key, message", [
    (lambda c, t: c["components"][0].update(paths=[str(t / "missing")]), "components[0].paths[0]", "no token folder"),
    (lambda c, t: c["components"][1].update(lang="fr"), "components[1]", "no document matches"),
    (lambda c, t: c["components"][1].update(source="nope"), "components[1].source", "no source 'nope'"),
    (lambda c, t: c["components"][0].update(weight=0.9), "components", "weights sum to 1.2"),
    (lambda c, t: c.update(tokens="50M"), "tokens", "more than every component can give"),
    (lambda c, t: c.update(seq_len=0), "seq_len", "at least 1"),
    (lambda c, t: c.update(tokens="lots"), "tokens", "expected a token count"),
    (lambda c, t: c["components"][0].update(weight=0), "components[0].weight", "must be positive"),
    (lambda c, t: c["components"][0].update(wieght=0.5), "components[0].wieght", "unknown parameter"),
    (lambda c, t: c["components"][0].update(where={"quality": {"min": 0.5}}), "components[0].where.quality",
     "curated: [OUT]"),
    (lambda c, t: c["components"][0].update(where={"tokens": {"min": 9, "max": 1}}), "components[0].where.tokens",
     "no document can match"),
    (lambda c, t: c.update(temperature=2), "components[0].weight", "not both"),
    (lambda c, t: c.update(curated=[str(t)]), "curated[0]", "no curated run"),
])
def test_bad_input_exits_2_naming_file_and_key(tmp_path, change, key, message):
    root = tmp_path / "tokens"
    write_meta(str(root))
    write_sized_source(str(root), "web", 20_000, mean_length=200, seed=1)
    write_sized_source(str(root), "books", 20_000, mean_length=2000, seed=2)
    config = {"tokens": "30K", "seq_len": 64, "paths": [str(root)],
              "components": [{"source": "web", "weight": 0.7}, {"source": "books", "weight": 0.3}]}
    change(config, tmp_path)
    code, output = run_cli(tmp_path, config)
    assert code == 2, output
    assert f"mixture.yaml: {key}:" in output and message in output, output
    assert "Traceback" not in output


def test_token_folders_of_different_tokenizers_are_refused(tmp_path):
    for name, sha in (("a", "a" * 64), ("b", "b" * 64)):
        write_meta(str(tmp_path / name), sha256=sha)
        write_sized_source(str(tmp_path / name), "web", 5_000, mean_length=100, seed=1)
    config = {"tokens": "5K", "seq_len": 64, "validation": 0,
              "components": [{"source": "web", "weight": 0.5, "paths": [str(tmp_path / "a")], "name": "a"},
                             {"source": "web", "weight": 0.5, "paths": [str(tmp_path / "b")], "name": "b"}]}
    code, output = run_cli(tmp_path, config)
    assert code == 2 and "components[1].paths[0]" in output and "another tokenizer" in output, output


def test_damaged_shard_fails_with_exit_1(tmp_path):
    root = tmp_path / "tokens"
    write_meta(str(root))
    write_sized_source(str(root), "web", 5_000, mean_length=100, seed=1, shards=1)
    shard = next(root.glob("web/*.bin"))
    shard.write_bytes(shard.read_bytes()[:1000])
    code, output = run_cli(tmp_path, {"tokens": "5K", "seq_len": 64, "paths": [str(root)],
                                      "components": [{"source": "web", "weight": 1}]})
    assert code == 1 and "damaged shard" in output, output


def test_parse_tokens():
    assert parse_tokens("300B", file=None, key="tokens") == 300_000_000_000
    assert parse_tokens("2.5M", file=None, key="tokens") == 2_500_000
    assert parse_tokens("10k", file=None, key="tokens") == 10_000
    assert parse_tokens("1_000", file=None, key="tokens") == 1000
    assert parse_tokens(1e9, file=None, key="tokens") == 10**9
    assert parse_tokens("3e6", file=None, key="tokens") == 3_000_000
    for bad in ("", "-5", "0", "1.5X", True):
        with pytest.raises(ConfigError):
            parse_tokens(bad, file=None, key="tokens")


def test_the_numpy_recipe_in_the_docs_reads_the_same_samples(small_mix):
    doc = (Path(__file__).resolve().parent.parent / "docs" / "mixture.md").read_text()
    recipe = doc.split("Reading sample `i` with a few lines of numpy:\n\n```python\n")[1].split("```")[0]
    ds = MixtureDataset(small_mix)
    for i in (0, 1, 500, len(ds) - 1):
        scope = {"i": i}
        exec(recipe.replace('"MIX/', f'"{small_mix}/').replace('f"MIX/', f'f"{small_mix}/'), scope)
        assert np.array_equal(np.array(scope["sample"], dtype=np.int64), ds[i])


def test_overlapping_components_hold_out_a_document_everywhere(tmp_path):
    root = tmp_path / "tokens"
    write_meta(str(root))
    write_sized_source(str(root), "web", 60_000, mean_length=100, seed=1)
    config = {"tokens": "20K", "seq_len": 64, "paths": [str(root)], "max_epochs": 10,
              "components": [{"name": "all", "source": "web", "weight": 0.5, "validation": 0.01},
                             {"name": "long", "source": "web", "weight": 0.5, "validation": 0.2,
                              "where": {"tokens": {"min": 50}}}]}
    build(config, tmp_path / "mix")
    docs = [pq.read_table(tmp_path / "mix" / "documents" / f"c{c}.parquet").to_pylist() for c in range(2)]
    val = {r["id"] for d in docs for r in d if r["split"] == "val"}
    train = {r["id"] for d in docs for r in d if r["split"] == "train"}
    assert val and train and not val & train
    long_val = {r["id"] for r in docs[1] if r["split"] == "val"}
    assert long_val <= {r["id"] for r in docs[0] if r["split"] == "val"}  # held out by "all" too


def test_shard_with_and_without_eos_is_damaged(tmp_path):
    root = tmp_path / "tokens"
    write_meta(str(root))
    write_shard(str(root), "web", "web-0", np.full(200, 30), seed=1)
    shard = next(root.glob("web/*.bin"))
    tokens = np.memmap(shard, dtype=np.uint16, mode="r+")
    tokens[29::60] = 7  # every other document loses its EOS
    tokens.flush()
    del tokens
    code, output = run_cli(tmp_path, {"tokens": "1K", "seq_len": 64, "paths": [str(root)],
                                      "components": [{"source": "web", "weight": 1}]})
    assert code == 1 and "some do not" in output, output


def test_a_token_folder_in_an_object_store_is_a_one_line_error_that_says_how_to_copy_it(tmp_path):
    """`curate tokenize --output s3://…` writes there for clusters without a shared disk; training memory-maps
    local files, so a mixture (and an export) over the store's folder says to copy it first, exit 2."""
    path = write_yaml(tmp_path / "mix.yaml", {"tokens": "1M", "seq_len": 64, "components": [
        {"name": "web", "source": "web", "paths": ["s3://bucket/tokens"], "weight": 1.0}]})
    result = CliRunner().invoke(main, ["mix", path, "--output", str(tmp_path / "mix")])
    assert result.exit_code == 2, result.output
    assert "s3://bucket/tokens is in an object store" in result.output and "aws s3 sync" in result.output
    assert not (tmp_path / "mix").exists()
    export = CliRunner().invoke(main, ["tokenizer", "export-nanogpt", "s3://bucket/tokens", "--output",
                                       str(tmp_path / "nano")])
    assert export.exit_code == 2 and "in an object store" in export.output, export.output
