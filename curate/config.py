"""Pipeline configuration: YAML file or command-line shortcut, validated on load.

    inputs:
      - source: cc                 # the name documents carry in the `source` column
        format: warc               # warc wet arc html jsonl parquet txt code
        paths: [dumps/*.warc.gz]   # files, globs or directories, relative to this file
        options: {}                # the reader's options (e.g. text_field: content)
    stages:                        # run in this order
      - extract
      - langid: {languages: [en, zh]}
      - gopher_quality: {skip_sources: [code]}
      - dedup: {threshold: 0.8}
    run:
      task_mb: 64                  # the largest task; smaller so that every worker gets two (docs/runner.md)

Every mistake (unknown key, wrong type, bad value, unknown stage or format)
raises ``ConfigError`` naming the file and the key path.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from curate.params import ConfigError, build_params, coerce, read_yaml_file
from curate.readers import Reader, reader_class
from curate.stage import GlobalStage, Stage, stage_class

#: Keys a stage entry may carry besides the stage's own parameters: which rows it applies to.
ROUTING_KEYS = ("sources", "skip_sources")

#: The default pipeline, in order. Text rules skip code inputs; code gets its own rules.
DEFAULT_STAGES = [
    "extract",
    "length",
    "langid",
    "gopher_repetition",
    "gopher_quality",
    "c4",
    "fineweb",
    "code_quality",
    "detox",
    "dedup",
    "pii",
]
#: Stages that judge natural-language text and must not see source code.
TEXT_ONLY_STAGES = {"langid", "gopher_repetition", "gopher_quality", "c4", "fineweb", "detox", "quality"}
CODE_ONLY_STAGES = {"code_quality"}


@dataclass
class RunSettings:
    task_mb: float = 64.0
    """The largest task in MB (files, byte ranges, row groups, parts of .gz/WARC files): a run sizes its
    tasks so that every worker gets about two, down to 4 MB, never above this (curate.readers.sizing)."""
    batch_rows: int = 1000
    """Documents per record batch flowing through the stages."""
    shard_rows: int = 200_000
    """A task's output rolls over to a new Parquet file after this many rows."""
    max_retries: int = 2
    """A task whose worker dies is retried this many times before the run reports it failed."""
    executor: Literal["auto", "ray", "in-process"] = "auto"
    """Where tasks run: ``ray`` (a pool of Ray workers), ``in-process`` (one after another in the curate
    process itself, no Ray started: nothing to start or stop, same tasks, same output), or ``auto``: in
    process for a small run (see ``in_process_mb``) or ``--workers 1``, Ray otherwise. A cluster
    (``--address``) always uses Ray."""
    in_process_mb: float = 32.0
    """``auto`` runs in process when the input's MB times the number of per-document stages is at most
    this: a guess at the work, against the seconds Ray takes to start and stop (32 MB through one
    stage, 3 MB through the ten default ones)."""

    def validate(self) -> None:
        for name in ("task_mb", "batch_rows", "shard_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.max_retries < 0:
            raise ValueError("max_retries: must be 0 or more")
        if self.in_process_mb < 0:
            raise ValueError("in_process_mb: must be 0 or more")


@dataclass
class InputSpec:
    source: str
    format: str
    paths: list[str]
    options: dict = field(default_factory=dict)
    base_dir: str = "."

    def reader(self, file: str | None = None, where: str = "inputs") -> Reader:
        cls = reader_class(self.format, key=f"{where}.format", file=file)
        return cls.from_config(self.source, self.options, where=f"{where}.options", file=file)


@dataclass
class StageSpec:
    name: str
    params: dict = field(default_factory=dict)
    sources: list[str] | None = None
    skip_sources: list[str] = field(default_factory=list)

    def build(self, file: str | None = None, where: str = "stages") -> Stage:
        cls = stage_class(self.name, key=where, file=file)
        return cls.from_config(self.params, where=f"{where}.{self.name}", file=file)

    def applies_to(self, source: str) -> bool:
        if source in self.skip_sources:
            return False
        return self.sources is None or source in self.sources


@dataclass
class PipelineConfig:
    inputs: list[InputSpec]
    stages: list[StageSpec]
    run: RunSettings = field(default_factory=RunSettings)
    file: str | None = None

    def to_dict(self) -> dict:
        return {
            "inputs": [{"source": i.source, "format": i.format, "paths": i.paths, "options": i.options} for i in self.inputs],
            "stages": [
                {s.name: {**s.params, **({"sources": s.sources} if s.sources is not None else {}),
                          **({"skip_sources": s.skip_sources} if s.skip_sources else {})}}
                for s in self.stages
            ],
            "run": dataclasses.asdict(self.run),
        }

    def fingerprint(self) -> str:
        """What decides the output: inputs, stages and their parameters (not paths' spelling)."""
        body = self.to_dict()
        body.pop("run")
        for spec, resolved in zip(body["inputs"], self.resolved_paths()):
            spec["paths"] = resolved
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def resolved_paths(self) -> list[list[str]]:
        from curate.readers import expand_paths

        out = []
        for spec in self.inputs:
            cls = reader_class(spec.format)
            out.append(expand_paths(spec.paths, cls, base_dir=spec.base_dir))
        return out

    def validate(self) -> None:
        """Build every reader and stage once so that errors surface before any work starts."""
        sources = set()
        for i, spec in enumerate(self.inputs):
            spec.reader(self.file, f"inputs[{i}]")
            sources.add(spec.source)
        globals_seen = 0
        for i, spec in enumerate(self.stages):
            stage = spec.build(self.file, f"stages[{i}]")
            if isinstance(stage, GlobalStage):
                globals_seen += 1
                if spec.sources is not None or spec.skip_sources:
                    raise ConfigError("a global stage sees every document; it takes no sources/skip_sources",
                                      file=self.file, key=f"stages[{i}].{spec.name}")
            for key in ROUTING_KEYS:
                for name in (getattr(spec, key) or []):
                    if name not in sources:
                        raise ConfigError(f"no input has source {name!r} (sources: {', '.join(sorted(sources))})",
                                          file=self.file, key=f"stages[{i}].{spec.name}.{key}")
        names = [s.name for s in self.stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"stage {duplicates[0]!r} is listed twice", file=self.file, key="stages")


def _parse_stage(entry: Any, index: int, file: str | None) -> StageSpec:
    where = f"stages[{index}]"
    if isinstance(entry, str):
        name, raw = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        (name, raw), = entry.items()
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a mapping of parameters, got {raw!r}", file=file, key=f"{where}.{name}")
    else:
        raise ConfigError(f"expected a stage name or a one-key mapping {{name: {{params}}}}, got {entry!r}",
                          file=file, key=where)
    raw = dict(raw)
    routing = {k: raw.pop(k) for k in ROUTING_KEYS if k in raw}
    sources = routing.get("sources")
    return StageSpec(
        name=name,
        params=raw,
        sources=None if sources is None else coerce(sources, list[str], f"{where}.{name}.sources", file),
        skip_sources=coerce(routing.get("skip_sources", []), list[str], f"{where}.{name}.skip_sources", file),
    )


def _parse_input(entry: Any, index: int, file: str | None, base_dir: str) -> InputSpec:
    where = f"inputs[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"expected a mapping with source, format and paths, got {entry!r}", file=file, key=where)
    known = {"source", "format", "paths", "options"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"unknown key (known: {', '.join(sorted(known))})", file=file, key=f"{where}.{unknown[0]}")
    for key in ("source", "format", "paths"):
        if key not in entry:
            raise ConfigError("missing (every input needs source, format and paths)", file=file, key=f"{where}.{key}")
    source = coerce(entry["source"], str, f"{where}.source", file)
    if not source or "/" in source or source.startswith("."):
        raise ConfigError(f"expected a plain name like 'cc' or 'books', got {source!r}", file=file, key=f"{where}.source")
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"expected a mapping, got {options!r}", file=file, key=f"{where}.options")
    return InputSpec(
        source=source,
        format=coerce(entry["format"], str, f"{where}.format", file),
        paths=coerce(entry["paths"], list[str], f"{where}.paths", file),
        options=options,
        base_dir=base_dir,
    )


def from_dict(raw: Any, *, file: str | None = None, base_dir: str = ".") -> PipelineConfig:
    if not isinstance(raw, dict):
        raise ConfigError("expected a mapping with keys inputs, stages (and optionally run)", file=file)
    unknown = sorted(set(raw) - {"inputs", "stages", "run"})
    if unknown:
        raise ConfigError("unknown top-level key (known: inputs, stages, run)", file=file, key=unknown[0])
    inputs_raw = raw.get("inputs")
    if not isinstance(inputs_raw, list) or not inputs_raw:
        raise ConfigError("expected a non-empty list of inputs", file=file, key="inputs")
    stages_raw = raw.get("stages", [])
    if not isinstance(stages_raw, list):
        raise ConfigError(f"expected a list of stages, got {stages_raw!r}", file=file, key="stages")
    config = PipelineConfig(
        inputs=[_parse_input(e, i, file, base_dir) for i, e in enumerate(inputs_raw)],
        stages=[_parse_stage(e, i, file) for i, e in enumerate(stages_raw)],
        run=build_params(RunSettings, raw.get("run"), where="run", file=file),
        file=file,
    )
    # the cheap language pre-check of extract is on where langid already says which languages it keeps
    from curate.stages.extract import inherit_precheck_languages

    inherit_precheck_languages(config.stages)
    config.validate()
    return config


def load_config(path: str, run_overrides: list[str] = ()) -> PipelineConfig:
    """The pipeline file at ``path``; ``run_overrides`` (``run.task_mb=8`` ...) replace its run settings."""
    raw = read_yaml_file(path, "pipeline file")
    if run_overrides and isinstance(raw, dict):
        run = dict(raw.get("run") or {}) if isinstance(raw.get("run") or {}, dict) else raw.get("run")
        if isinstance(run, dict):
            for item in run_overrides:
                _, param, value = _split_override(item, "command line")
                run[param] = parse_set_value(value, _param_type(RunSettings, param), f"--set run.{param}",
                                             "command line")
            raw = {**raw, "run": run}
    return from_dict(raw, file=path, base_dir=os.path.dirname(os.path.abspath(path)))


def _split_override(item: str, where: str) -> tuple[str, str, str]:
    key, eq, value = item.partition("=")
    stage_name, dot, param = key.partition(".")
    if not eq or not dot or not param:
        raise ConfigError(f"expected STAGE.PARAM=VALUE or run.SETTING=VALUE, got {item!r}", file=where, key="--set")
    return stage_name, param, value


def _param_type(params_class: type, name: str) -> Any:
    try:
        return typing.get_type_hints(params_class).get(name, Any)
    except Exception:  # noqa: BLE001 - an unresolvable hint: take the value as YAML says
        return Any


def _accepts(tp: Any, kind: type) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, kind) for arg in typing.get_args(tp))
    return tp is kind or origin is kind


def parse_set_value(text: str, tp: Any, key: str, where: str) -> Any:
    """A ``--set`` value, read as YAML; where a list is expected (and not a plain string), ``en,zh`` is a list.

    A value that starts like a YAML list or mapping but does not parse (``[en,zh``) is an error, never the
    literal string: a parameter given the wrong meaning silently is worse than one refused.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        if text.strip()[:1] in ("[", "{"):
            raise ConfigError(f"{text!r} is not a valid list or mapping (write a list as en,zh or [en, zh])",
                              file=where, key=key) from None
        value = text
    if isinstance(value, str) and "," in value and _accepts(tp, list) and not _accepts(tp, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return value


#: The stages the ``--input/--format`` shortcut runs when ``--stages`` does not name them (listed
#: by ``curate run --help``). Web formats get the whole default pipeline. Books (``txt``) skip C4
#: and FineWeb: their line rules judge web-page lines, and a book's lines are hard-wrapped print
#: lines or dialogue, not page lines (docs/quality.md has the numbers); Gopher's document rules
#: still apply. Code gets the code rules and none of the prose rules.
FORMAT_STAGES: dict[str, list[str]] = {
    **{fmt: [s for s in DEFAULT_STAGES if s != "code_quality"]
       for fmt in ("warc", "wet", "arc", "html", "jsonl", "parquet")},
    "txt": [s for s in DEFAULT_STAGES if s not in ("c4", "fineweb", "code_quality")],
    "code": [s for s in DEFAULT_STAGES if s not in TEXT_ONLY_STAGES],
}
#: Parameters the shortcut gives a stage for one format (``--set`` overrides them). A novel is
#: 50,000 to 200,000 words (Pride and Prejudice: 122,000) and the txt reader makes one document
#: per book unless told to chunk: Gopher's 100,000-word ceiling is for web pages, so books are
#: bounded by the length stage's 5,000,000 characters instead.
FORMAT_PARAMS: dict[str, dict[str, dict]] = {
    "txt": {"gopher_quality": {"max_doc_words": 1_000_000}},
}


def default_stage_specs(code_sources: list[str], only: list[str] | None = None,
                        fmt: str | None = None) -> list[StageSpec]:
    """The default pipeline for input format ``fmt`` (``FORMAT_STAGES``; any format: all of
    ``DEFAULT_STAGES``), or the named stages, routed so that code gets code rules."""
    names = only or FORMAT_STAGES.get(fmt or "", DEFAULT_STAGES)
    specs = []
    for name in names:
        spec = StageSpec(name, params=dict(FORMAT_PARAMS.get(fmt or "", {}).get(name, {})))
        if name in TEXT_ONLY_STAGES and code_sources:
            spec.skip_sources = list(code_sources)
        if name in CODE_ONLY_STAGES:
            spec.sources = list(code_sources)
            if not code_sources:
                continue  # no code input: nothing for code rules to do
        specs.append(spec)
    return specs


def from_shortcut(
    inputs: list[str],
    fmt: str,
    source: str | None,
    stages: list[str] | None,
    overrides: list[str],
) -> PipelineConfig:
    """``curate run --input ... --format ... [--stages a,b] [--set stage.param=value]``."""
    where = "command line"
    source = source or fmt
    raw_stages = default_stage_specs([source] if fmt == "code" else [], stages, fmt)
    run: dict[str, Any] = {}
    for item in overrides:
        stage_name, param, value = _split_override(item, where)
        key = f"{stage_name}.{param}"
        if stage_name == "run":  # run.task_mb=8: the run settings, not a stage
            run[param] = parse_set_value(value, _param_type(RunSettings, param), f"--set {key}", where)
            continue
        matches = [s for s in raw_stages if s.name == stage_name]
        if not matches:
            names = ", ".join(s.name for s in raw_stages)
            raise ConfigError(f"stage {stage_name!r} is not in this pipeline (stages: {names}; run settings are "
                              "run.SETTING)", file=where, key=f"--set {key}")
        if param in ROUTING_KEYS:
            parsed = parse_set_value(value, list[str], f"--set {key}", where)
            setattr(matches[0], param, coerce(parsed, list[str], f"--set {key}", where))
        else:
            params_class = getattr(stage_class(stage_name, key=f"--set {key}", file=where), "Params", None)
            hint = _param_type(params_class, param) if params_class is not None else Any
            matches[0].params[param] = parse_set_value(value, hint, f"--set {key}", where)
    raw = {
        "run": run,
        "inputs": [{"source": source, "format": fmt, "paths": list(inputs)}],
        "stages": [
            {s.name: {**copy.deepcopy(s.params),
                      **({"sources": s.sources} if s.sources is not None else {}),
                      **({"skip_sources": s.skip_sources} if s.skip_sources else {})}}
            for s in raw_stages
        ],
    }
    return from_dict(raw, file=where, base_dir=os.getcwd())
