"""The mixture file: which token folders, which documents, which weights, validated on load.

    tokens: 300B                  # training budget: 2.5M, 300B, 1e9 ... (tokens the model trains on)
    seq_len: 2048                 # samples are seq_len + 1 tokens
    seed: 1234                    # the per-epoch document shuffles
    max_epochs: 4                 # default for every component
    validation: 0.01              # share of each component's documents held out (by a hash of the id)
    paths: [tokens/]              # default token folder(s) (`curate tokenize` output), relative to this file
    curated: [out/]               # curated run(s) whose signal columns `where` can use (joined by id)
    components:
      - name: web-zh-top
        source: web               # one source or a list
        lang: zh                  # optional: one language or a list
        where:                    # optional: every condition must hold
          quality_score: {quantile: [0.667, 1.0]}   # top third of the selection by this column
          dup_cluster_size: {max: 1}
        weight: 0.2               # share of the training tokens (or a mixture-wide `temperature: T`)
        max_epochs: 2

Every mistake raises ``ConfigError`` naming the file and the key path
(``mixture.yaml: components[1].weight: expected a number, got 'high'``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any


from curate.params import ConfigError, build_params, coerce, read_yaml_file

#: Columns every token folder's ``docs.parquet`` has; anything else in ``where`` comes from the curated run.
DOC_FIELDS = ("lang", "tokens")
SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_AMOUNT = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*$", re.IGNORECASE)


def parse_tokens(value: Any, *, file: str | None, key: str) -> int:
    """A token count as written by people: ``300B``, ``2.5M``, ``10k``, ``1e9``, ``1_000_000``."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a token count like 300B or 2.5M, got {value!r}", file=file, key=key)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _AMOUNT.match(str(value))
        if not match:
            raise ConfigError(f"expected a token count like 300B, 2.5M or 1000000, got {value!r}", file=file, key=key)
        number = float(match.group(1).replace("_", "").replace(",", "")) * SUFFIXES[match.group(2).lower()]
    if not math.isfinite(number) or number < 1:
        raise ConfigError(f"must be at least 1 token, got {value!r}", file=file, key=key)
    return int(round(number))


@dataclass
class Condition:
    """One ``where`` entry: a column and what its value must be (a null value never matches)."""

    column: str
    values: list | None = None
    """The value must be one of these (``col: x`` or ``col: [x, y]``)."""
    min: float | None = None
    """Inclusive lower bound."""
    max: float | None = None
    """Inclusive upper bound."""
    quantile: tuple[float, float] | None = None
    """[lo, hi): the document's rank among the selection (share of documents with a smaller value)."""


@dataclass
class ComponentSettings:
    name: str
    source: list[str]
    """Source name(s) as `curate tokenize` wrote them (the `source` column of the curated run)."""
    paths: list[str] | None = None
    """Token folder(s); default: the mixture-wide ``paths``."""
    lang: list[str] | None = None
    where: dict = field(default_factory=dict)
    weight: float | None = None
    max_epochs: float | None = None
    validation: float | None = None

    def validate(self) -> None:
        if not self.name.strip():
            raise ValueError("name: must not be empty")
        if not self.source:
            raise ValueError("source: name at least one source")
        if self.weight is not None and not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError("weight: must be positive (leave a component out instead of giving it weight 0)")
        if self.max_epochs is not None and not self.max_epochs > 0:
            raise ValueError("max_epochs: must be positive")
        if self.validation is not None and not 0 <= self.validation < 1:
            raise ValueError("validation: must be in [0, 1)")


@dataclass
class MixtureSettings:
    tokens: Any = None
    """Training budget in tokens (``300B``, ``2.5M``, an integer)."""
    seq_len: int = 2048
    seed: int = 1234
    max_epochs: float = 4.0
    """Most passes over a component's training documents; a capped component's surplus goes to the others."""
    temperature: float | None = None
    """Weights from the token counts: weight ∝ tokens^(1/T) (mT5, XLM-R); excludes per-component weights."""
    normalize: bool = False
    """Rescale weights that do not sum to 1 (otherwise that is an error)."""
    validation: float = 0.01
    """Share of each component's documents held out for validation, chosen by a hash of the document id."""
    validation_seed: int = 0
    """Seed of that hash; 0 is `curate tokenizer train`'s default, so its held-out documents are among these."""
    paths: list[str] = field(default_factory=list)
    curated: list[str] = field(default_factory=list)
    components: list = field(default_factory=list)

    def validate(self) -> None:
        if self.seq_len < 1:
            raise ValueError("seq_len: must be at least 1")
        if not self.max_epochs > 0:
            raise ValueError("max_epochs: must be positive")
        if self.temperature is not None and not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError("temperature: must be positive")
        if not 0 <= self.validation < 1:
            raise ValueError("validation: must be in [0, 1)")


@dataclass
class ComponentSpec:
    name: str
    sources: list[str]
    paths: list[str]
    """Absolute token folders."""
    lang: list[str] | None
    where: list[Condition]
    weight: float | None
    max_epochs: float
    validation: float
    key: str
    """Where this component sits in the file, for errors (``components[2]``)."""


@dataclass
class MixtureConfig:
    tokens: int
    seq_len: int
    seed: int
    temperature: float | None
    normalize: bool
    validation_seed: int
    curated: list[str]
    components: list[ComponentSpec]
    file: str | None = None

    def to_dict(self) -> dict:
        """Everything that decides the index (absolute paths, defaults filled in)."""
        body = asdict(self)
        body.pop("file")
        for component in body["components"]:
            component.pop("key")
        return body

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=list).encode()).hexdigest()

    def weights_asked(self) -> list[float] | None:
        """The weights as written, or None under a temperature."""
        return None if self.temperature is not None else [c.weight for c in self.components]


def _parse_condition(column: str, raw: Any, file: str | None, key: str) -> Condition:
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"min", "max", "quantile", "in"})
        if unknown:
            raise ConfigError("unknown condition (known: min, max, quantile, in)", file=file, key=f"{key}.{unknown[0]}")
        if not raw:
            raise ConfigError("empty condition: give min, max, quantile or in", file=file, key=key)
        cond = Condition(column)
        for bound in ("min", "max"):
            if bound in raw:
                setattr(cond, bound, coerce(raw[bound], float, f"{key}.{bound}", file))
        if cond.min is not None and cond.max is not None and cond.min > cond.max:
            raise ConfigError(f"min {cond.min} is above max {cond.max}: no document can match", file=file, key=key)
        if "quantile" in raw:
            pair = coerce(raw["quantile"], list[float], f"{key}.quantile", file)
            if len(pair) != 2 or not 0 <= pair[0] < pair[1] <= 1:
                raise ConfigError(f"expected [lo, hi] with 0 <= lo < hi <= 1, got {raw['quantile']!r}", file=file,
                                  key=f"{key}.quantile")
            cond.quantile = (pair[0], pair[1])
        if "in" in raw:
            values = raw["in"] if isinstance(raw["in"], list) else [raw["in"]]
            if not values:
                raise ConfigError("an empty list matches no document", file=file, key=f"{key}.in")
            cond.values = values
        return cond
    if isinstance(raw, list):
        if not raw:
            raise ConfigError("an empty list matches no document", file=file, key=key)
        return Condition(column, values=list(raw))
    if raw is None:
        raise ConfigError("a null value matches no document (nulls never match)", file=file, key=key)
    return Condition(column, values=[raw])


def _absolute(paths: list[str], base_dir: str) -> list[str]:
    """Local paths relative to the mixture file; a URL as given (opening it then says to copy it here)."""
    from curate.remote import is_remote

    return [p if is_remote(p) else os.path.normpath(os.path.join(base_dir, os.path.expanduser(p))) for p in paths]


def from_dict(raw: Any, *, file: str | None = None, base_dir: str = ".") -> MixtureConfig:
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping with tokens, seq_len and components", file=file)
    try:
        settings = build_params(MixtureSettings, raw, where="", file=file)
    except ConfigError as err:  # build_params writes top-level keys as ".seq_len"
        raise ConfigError(err.message, file=file, key=(err.key or "").lstrip(".") or None) from None
    if settings.tokens is None:
        raise ConfigError("missing: the training budget in tokens (e.g. tokens: 300B)", file=file, key="tokens")
    budget = parse_tokens(settings.tokens, file=file, key="tokens")
    if not isinstance(raw.get("components"), list) or not raw["components"]:
        raise ConfigError("expected a non-empty list of components", file=file, key="components")
    components = []
    for index, entry in enumerate(raw["components"]):
        key = f"components[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"expected a mapping with name, source and weight, got {entry!r}", file=file, key=key)
        entry = dict(entry)
        if "source" not in entry:
            raise ConfigError("missing (every component names a source)", file=file, key=f"{key}.source")
        if "name" not in entry:
            parts = coerce(entry["source"], list[str], f"{key}.source", file)
            if entry.get("lang"):
                parts += coerce(entry["lang"], list[str], f"{key}.lang", file)
            entry["name"] = "-".join(parts)
        spec = build_params(ComponentSettings, entry, where=key, file=file)
        paths = spec.paths if spec.paths is not None else settings.paths
        if not paths:
            raise ConfigError("no token folder: give paths here or mixture-wide", file=file, key=f"{key}.paths")
        if not isinstance(spec.where, dict):
            raise ConfigError(f"expected a mapping of column: condition, got {spec.where!r}", file=file,
                              key=f"{key}.where")
        where = [_parse_condition(str(col), value, file, f"{key}.where.{col}") for col, value in spec.where.items()]
        if spec.lang is not None and not spec.lang:
            raise ConfigError("an empty list matches no document", file=file, key=f"{key}.lang")
        if settings.temperature is not None and spec.weight is not None:
            raise ConfigError("give weights or a mixture-wide temperature, not both", file=file, key=f"{key}.weight")
        if settings.temperature is None and spec.weight is None:
            raise ConfigError("missing: every component needs a weight (or set a mixture-wide temperature)",
                              file=file, key=f"{key}.weight")
        components.append(ComponentSpec(
            name=spec.name, sources=spec.source, paths=_absolute(paths, base_dir), lang=spec.lang, where=where,
            weight=spec.weight, max_epochs=spec.max_epochs if spec.max_epochs is not None else settings.max_epochs,
            validation=spec.validation if spec.validation is not None else settings.validation, key=key))
    names = [c.name for c in components]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"component name {twice[0]!r} is used twice", file=file,
                          key=f"components[{names.index(twice[0], names.index(twice[0]) + 1)}].name")
    if settings.temperature is None:
        total = sum(c.weight for c in components)
        if abs(total - 1) > 1e-6 and not settings.normalize:
            raise ConfigError(
                f"weights sum to {total:.6g}, not 1. A weight is a share of the training tokens, so shares that do "
                "not add up are ambiguous (a typo or a rounded table, like GPT-3's, which sums to 1.01): fix them, "
                "or set `normalize: true` to divide each by their sum", file=file, key="components")
    return MixtureConfig(tokens=budget, seq_len=settings.seq_len, seed=settings.seed, temperature=settings.temperature,
                         normalize=settings.normalize, validation_seed=settings.validation_seed,
                         curated=_absolute(settings.curated, base_dir), components=components, file=file)


def load_config(path: str) -> MixtureConfig:
    raw = read_yaml_file(path, "mixture file")
    return from_dict(raw, file=path, base_dir=os.path.dirname(os.path.abspath(path)))
