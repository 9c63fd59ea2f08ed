"""Which signal column each stage writes, and which of the run's parameters decide on it.

The report draws every signal's distribution with the threshold that was *active in that run*: the
thresholds are read from the run's own config (``manifest.json``), resolved against each stage's
``Params`` dataclass so a parameter the config left out shows its default, not nothing. The table
below names, per signal, the parameters that bound it; the values always come from the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from curate.params import ConfigError, build_params

# Parameters that choose rows, not values: they are not thresholds and not Params fields.
_ROUTING_KEYS = ("sources", "skip_sources")


@dataclass(frozen=True)
class Signal:
    """One signal column and the parameters whose values bound it."""

    column: str
    stage: str
    label: str
    #: "ratio" (bins over [0, 1]), "log" (decades: word and character counts), "linear" (data range).
    scale: str = "linear"
    #: Parameter names whose value is drawn as a line on the distribution.
    params: tuple[str, ...] = ()


def _repetition_signals() -> list[Signal]:
    from curate.stages.gopher import REPETITION_SIGNALS

    return [Signal(f"gopher_{name}", "gopher_repetition", f"Gopher repetition: {name}", "ratio", (name,))
            for name in REPETITION_SIGNALS]


def signal_table() -> list[Signal]:
    """Every signal the report can draw: the ones most runs tune first, then the many repetition ratios and code."""
    return [
        Signal("char_count", "length", "characters", "log", ("min_chars", "max_chars")),
        Signal("lang_score", "langid", "language score (top label probability)", "ratio", ("min_score",)),
        Signal("lang_runner_up_share", "langid", "runner-up language share", "ratio"),
        Signal("cjk_ratio", "langid", "CJK character ratio", "ratio"),
        Signal("gopher_words", "gopher_quality", "Gopher: words", "log", ("min_doc_words", "max_doc_words")),
        Signal("gopher_mean_word_length", "gopher_quality", "Gopher: mean word length", "linear",
               ("min_avg_word_length", "max_avg_word_length", "zh_min_avg_word_length", "zh_max_avg_word_length")),
        Signal("gopher_hash_ratio", "gopher_quality", "Gopher: # per word", "ratio", ("max_symbol_word_ratio",)),
        Signal("gopher_ellipsis_ratio", "gopher_quality", "Gopher: ellipses per word", "ratio",
               ("max_symbol_word_ratio",)),
        Signal("gopher_bullet_lines_ratio", "gopher_quality", "Gopher: bullet lines", "ratio",
               ("max_bullet_lines_ratio",)),
        Signal("gopher_ellipsis_lines_ratio", "gopher_quality", "Gopher: lines ending in an ellipsis", "ratio",
               ("max_ellipsis_lines_ratio",)),
        Signal("gopher_alpha_words_ratio", "gopher_quality", "Gopher: words with a letter", "ratio",
               ("min_alpha_words_ratio",)),
        Signal("gopher_stop_words", "gopher_quality", "Gopher: distinct stop words", "linear", ("min_stop_words",)),
        Signal("c4_sentences", "c4", "C4: sentences", "log", ("min_sentences", "cjk_min_sentences")),
        Signal("c4_kept_lines_ratio", "c4", "C4: share of lines C4 keeps", "ratio"),
        Signal("c4_no_terminal_punct_ratio", "c4", "C4: lines without terminal punctuation", "ratio"),
        Signal("c4_too_few_words_ratio", "c4", "C4: lines with too few words", "ratio"),
        Signal("fineweb_line_punct_ratio", "fineweb", "FineWeb: lines ending in punctuation", "ratio",
               ("min_line_punct_ratio",)),
        Signal("fineweb_short_line_ratio", "fineweb", "FineWeb: short lines", "ratio", ("max_short_line_ratio",)),
        Signal("fineweb_dup_line_char_ratio", "fineweb", "FineWeb: duplicated line characters", "ratio",
               ("max_dup_line_char_ratio",)),
        Signal("fineweb_newline_ratio", "fineweb", "FineWeb: newlines per word", "linear", ("max_newline_ratio",)),
        Signal("quality_score", "quality", "quality classifier score", "ratio", ("threshold",)),
        Signal("toxic_score", "detox", "toxicity: word-list score", "linear", ("score_threshold",)),
        Signal("toxic_count", "detox", "toxicity: matched terms", "log", ("min_count",)),
        Signal("toxic_prob", "detox", "toxicity: classifier probability", "ratio", ("model_threshold",)),
        *_repetition_signals(),
        Signal("max_line_length", "code_quality", "code: longest line", "log", ("max_line_length",)),
        Signal("avg_line_length", "code_quality", "code: mean line length", "log", ("max_avg_line_length",)),
        Signal("alphanum_fraction", "code_quality", "code: alphanumeric fraction", "ratio",
               ("min_alphanum_fraction",)),
    ]


@dataclass
class StageConfig:
    """A stage as the run configured it: resolved parameters and the sources it applied to."""

    name: str
    index: int
    params: dict[str, Any] = field(default_factory=dict)
    sources: list[str] | None = None
    skip_sources: list[str] = field(default_factory=list)


def run_stages(manifest: dict, manifest_path: str) -> list[StageConfig]:
    """The run's stages with every parameter resolved (defaults filled in) from its ``manifest.json``.

    A stage that cannot be loaded here (a user's own class not importable now) keeps the parameters
    the config spelled out: the report still draws it, with the thresholds it knows.
    """
    from curate.stage import stage_class

    config = manifest.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("stages", []), list):
        raise ConfigError("expected the run's config with a list of stages", file=manifest_path, key="config.stages")
    out = []
    for i, entry in enumerate(config.get("stages", [])):
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError("expected one stage name with its parameters", file=manifest_path,
                              key=f"config.stages[{i}]")
        (name, raw), = entry.items()
        raw = dict(raw or {})
        routing = {key: raw.pop(key) for key in _ROUTING_KEYS if key in raw}
        try:
            cls = stage_class(name)
            params = dataclasses.asdict(build_params(cls.Params, raw, where=f"config.stages[{i}].{name}",
                                                     file=manifest_path))
        except (ConfigError, ImportError, TypeError):
            params = raw
        out.append(StageConfig(name, i, params, routing.get("sources"), list(routing.get("skip_sources") or [])))
    return out


def thresholds(signal: Signal, stage: StageConfig | None) -> list[tuple[str, float]]:
    """(label, value) of every active threshold on ``signal`` in this run; empty when none applies.

    The quality classifier has a fixed threshold only in ``mode: threshold`` (its Pareto rule draws
    per document), and the language score has per-language overrides (``min_scores``).
    """
    if stage is None:
        return []
    p = stage.params
    if signal.column == "quality_score" and p.get("mode", "pareto") != "threshold":
        return []
    if signal.column == "toxic_prob" and not p.get("model"):
        return []
    out = []
    for name in signal.params:
        value = p.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if name == "max_doc_words" and value >= 10 ** 9:
            continue
        out.append((f"{name} = {value:g}", float(value)))
    if signal.column == "lang_score":
        for lang, value in sorted((p.get("min_scores") or {}).items()):
            out.append((f"min_scores.{lang} = {value:g}", float(value)))
    return out


def rule_note(signal: Signal, stage: StageConfig | None) -> str:
    """A sentence for signals whose decision is not a fixed line on the axis."""
    if stage is None:
        return "stage not in this run's config"
    if signal.column == "quality_score" and stage.params.get("mode", "pareto") == "pareto":
        return f"Pareto rule (alpha {stage.params.get('pareto_alpha', 9.0):g}): kept with a probability that " \
               "grows with the score, no fixed threshold"
    if signal.column == "quality_score" and stage.params.get("mode") == "score":
        return "mode: score (labels only, rejects nothing)"
    if signal.column == "toxic_score":
        return f"rejected when score > threshold and at least {stage.params.get('min_count', 1)} term(s) match"
    if not signal.params:
        return "signal only: no rule rejects on it"
    return ""
