"""One self-contained HTML file: a run's funnel, reasons, signals with their thresholds, samples,
and optionally its tokens, mixture and training curves.

The file opens from disk with no server and no network: Plotly's JavaScript (the copy inside the
``plotly`` wheel) and the styles are inline, every figure is a JSON block drawn by one small script.
Safety, in layers: every string from the data is HTML-escaped where it lands (texts, URLs, file
names, reasons; ``charts.label`` inside figures), links are made only for http(s) URLs, texts are
cut, and a Content-Security-Policy lets only the report's own scripts run (by their SHA-256), so
even a string that slipped through escaping could not execute. Panels whose input was not given, or
whose columns the run does not have, are left out rather than drawn empty.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources

from curate import storage
from curate.dashboards import charts, queries
from curate.dashboards.inputs import (MixtureInput, RunInput, TokensInput, TrainInput, open_mixture, open_run,
                                      open_tokens, open_training)
from curate.dashboards.signals import rule_note, signal_table, thresholds


@dataclass
class ReportParams:
    """What the report shows; the defaults suit runs from a few documents to tens of millions."""

    #: Bins per signal histogram.
    bins: int = 40
    #: Sample documents shown per reject reason (0: no samples panel).
    samples: int = 5
    #: Characters of a sample's text shown (the rest is cut).
    sample_chars: int = 600
    #: Reject reasons that get samples, most documents first.
    sample_reasons: int = 40
    #: Languages drawn per source; the rest are summed as "others".
    languages: int = 12
    #: Add the Content-Security-Policy that allows only the report's own scripts (off only to test escaping alone).
    csp: bool = True

    def validate(self) -> None:
        if not 5 <= self.bins <= 500:
            raise ValueError("bins: must be in [5, 500]")
        if not 0 <= self.samples <= 100:
            raise ValueError("samples: must be in [0, 100]")
        if not 20 <= self.sample_chars <= 100_000:
            raise ValueError("sample_chars: must be in [20, 100000]")
        if self.sample_reasons < 1:
            raise ValueError("sample_reasons: must be at least 1")
        if self.languages < 1:
            raise ValueError("languages: must be at least 1")


@dataclass
class Panel:
    id: str
    title: str
    intro: str = ""
    body: list[str] = field(default_factory=list)
    charts: int = 0


@dataclass
class Report:
    """The built page and what it holds (the CLI prints this; tests check it)."""

    html: str
    panels: list[str]
    partial: bool
    seconds: float


def esc(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


class _Page:
    """Collects panels and figures; renders the page with one JSON block per figure."""

    def __init__(self):
        self.panels: list[Panel] = []
        self.figures: list[tuple[str, str]] = []  # (div id, figure JSON)

    def figure(self, panel: Panel, fig, css: str = "chart") -> None:
        div = f"chart-{len(self.figures)}"
        self.figures.append((div, fig.to_json()))
        panel.body.append(f'<div class="{css}" id="{div}" data-figure="{div}-data"></div>')
        panel.charts += 1


def build(run_path: str, *, tokens: str | None = None, mixture: str | None = None, train: list[str] | tuple = (),
          params: ReportParams | None = None, refresh: str | None = None, poll_ms: int = 3000) -> Report:
    """Query everything and render the page (not written anywhere: see ``build_report``).

    ``refresh`` (serve mode) is the current version string: the page polls ``/version`` and reloads
    when it changes.
    """
    started = time.perf_counter()
    params = params or ReportParams()
    run = open_run(run_path)
    token_input = open_tokens(tokens) if tokens else None
    mixture_input = open_mixture(mixture) if mixture else None
    train_inputs = open_training(list(train)) if train else []
    page = _Page()
    from curate import stats

    con = stats.connect(run.path)  # a run in an object store: its client registered with DuckDB
    if token_input is not None:
        storage.register_duckdb(con, token_input.path)  # token folders may be in a store too
    # every panel reads the same files: parse each one's footer (thousands of row groups) once, not per query
    con.execute("SET parquet_metadata_cache = true")
    with charts.no_template():
        _run_panels(page, con, run, params)
        if token_input is not None:
            _tokens_panel(page, con, token_input)
        if mixture_input is not None:
            _mixture_panel(page, con, mixture_input, train_inputs)
        if train_inputs:
            _training_panel(page, train_inputs)
            _ablation_panels(page, con, list(train))
    if params.samples:
        _samples_panel(page, con, run, params)
    con.close()
    seconds = time.perf_counter() - started
    body = _render(page, run, token_input, mixture_input, train_inputs, params, refresh, poll_ms, seconds)
    return Report(body, [p.id for p in page.panels], not run.complete, seconds)


def build_report(run_path: str, output: str, **options) -> Report:
    """Build the report and write it to ``output`` (atomically: a reader never sees half a file)."""
    report = build(run_path, **options)
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(report.html)
    os.replace(tmp, output)
    return report


# ---- panels -------------------------------------------------------------------------------------------

def _run_panels(page: _Page, con, run: RunInput, params: ReportParams) -> None:
    from curate import stats

    funnel_rows = stats.funnel(con)
    order = queries.stage_order(con)
    panel = Panel("funnel", "Funnel per source and stage",
                  "Documents and bytes that leave each stage, per source, in pipeline order (from stats/).")
    page.figure(panel, charts.funnel(funnel_rows))
    panel.body.append(_funnel_table(funnel_rows))
    page.panels.append(panel)

    reason_rows = queries.reasons(con)
    if reason_rows:
        panel = Panel("reasons", "Reject reasons, ranked per stage",
                      "Documents each rule dropped (and records a reader skipped on purpose), stages in pipeline order.")
        page.figure(panel, charts.reasons(reason_rows, order))
        page.panels.append(panel)

    signals = signal_table()
    marks = {s.column: thresholds(s, run.stage(s.stage)) for s in signals}
    sources = list(dict.fromkeys(row[0] for row in funnel_rows))
    found = queries.profile(con, signals, params.bins, {c: [v for _, v in m] for c, m in marks.items()}, sources)
    hists = found.histograms
    if any(code != "?" for _, code, _, _ in found.languages):
        panel = Panel("languages", "Languages per source, kept vs rejected",
                      "Top label of the language identifier; rejected counts every stage's rejects (not the reader's).")
        page.figure(panel, charts.languages(found.languages, params.languages))
        page.panels.append(panel)

    if hists:
        panel = Panel("signals", "Signals and the thresholds of this run",
                      "Each signal over every document that reached its stage: " + _key() + ". Dashed lines: the "
                      "thresholds in this run's config (manifest.json).")
        for hist in hists:
            s = hist.signal
            page.figure(panel, charts.signal(hist, marks[s.column], rule_note(s, run.stage(s.stage))), "chart third")
        page.panels.append(panel)

    clusters = found.clusters
    if clusters:
        panel = Panel("dedup", "Duplicate clusters by size",
                      "Clusters of exact, URL and near duplicates; one copy of each is kept.")
        page.figure(panel, charts.dedup(clusters))
        page.panels.append(panel)

    pii_rows = found.pii
    if pii_rows:
        panel = Panel("pii", "Personal data replaced, by type",
                      "Placeholders the pii stage wrote into kept documents.")
        page.figure(panel, charts.pii(pii_rows))
        page.panels.append(panel)


def _key() -> str:
    return ", ".join(f"<span class='key' style='background:{charts.COLORS[g]}'></span>{esc(g)}" for g in queries.GROUPS)


def _tokens_panel(page: _Page, con, tokens: TokensInput) -> None:
    rows = queries.tokens_by_source(con, tokens.stats_glob)
    if not rows:
        return
    panel = Panel("tokens", "Tokens per source and language",
                  f"From {esc(tokens.path)}/stats (tokenizer {esc(tokens.meta.get('tokenizer', '?'))}, "
                  f"vocabulary {esc(tokens.meta.get('vocab_size', '?'))}).")
    page.figure(panel, charts.tokens(rows))
    table = ["<table class='data'><thead><tr><th>source</th><th>language</th><th>documents</th><th>tokens</th>"
             "<th>bytes</th><th>bytes per token</th><th>tokens per document</th></tr></thead><tbody>"]
    for source, lang, docs, count, size in rows:
        table.append(f"<tr><td>{esc(source)}</td><td>{esc(lang)}</td><td>{docs:,}</td><td>{count:,}</td>"
                     f"<td>{size:,}</td><td>{size / count if count else 0:.2f}</td>"
                     f"<td>{count / docs if docs else 0:,.0f}</td></tr>")
    table.append("</tbody></table>")
    panel.body.append("".join(table))
    page.panels.append(panel)


def _mixture_panel(page: _Page, con, mixture: MixtureInput, runs: list[TrainInput]) -> None:
    rows = queries.mixture_rows(con, mixture.table_path)
    if not rows:
        return
    meta = mixture.meta
    budget = meta.get("tokens")
    trained = _trained_on(mixture, runs)
    panel = Panel("mixture", "Mixture",
                  f"{esc(mixture.path)}: budget {_num(budget)} tokens, sequence length {esc(meta.get('seq_len', '?'))}, "
                  f"seed {esc(meta.get('seed', '?'))}. Epochs: how many times a component's tokens are drawn over "
                  "the whole budget; elapsed: over the tokens a training run has consumed so far.")
    page.figure(panel, charts.mixture(rows))
    head = ["component", "documents", "tokens available", "weight asked", "weight realized", "tokens drawn",
            "epochs", "val tokens"] + [f"epochs elapsed: {esc(run.name)}" for run, _ in trained]
    table = ["<table class='data'><thead><tr>" + "".join(f"<th>{h if h.startswith('epochs elapsed') else esc(h)}</th>"
                                                         for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        cells = [esc(r["component"]), _num(r["documents"]), _num(r["tokens_available"]), _frac(r["weight_asked"]),
                 _frac(r["weight_realized"]), _num(r["tokens_drawn"]), f"{_float(r['epochs']):.3g}",
                 _num(r["val_tokens"])]
        for _, seen in trained:
            share = min(1.0, seen / budget) if budget else 0.0
            cells.append(f"{_float(r['epochs']) * share:.3g}")
        table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table.append("</tbody></table>")
    panel.body.append("".join(table))
    page.panels.append(panel)


def _trained_on(mixture: MixtureInput, runs: list[TrainInput]) -> list[tuple[TrainInput, float]]:
    """Runs trained on this mixture (their config names its folder), with the tokens they consumed."""
    out = []
    target = os.path.realpath(mixture.path)
    for run in runs:
        if not run.train:
            continue
        named = run.config.get("mixture")
        same = bool(mixture.meta.get("fingerprint")) and run.config.get("mixture_fingerprint") == mixture.meta.get(
            "fingerprint")
        if isinstance(named, str) and not same:
            # an absolute path, or one relative to where `curate train` ran: some folder above the run
            bases = [os.getcwd(), *_ancestors(run.path)]
            same = any(os.path.realpath(os.path.join(base, named)) == target for base in bases)
        if same:
            out.append((run, float(run.train[-1].get("tokens") or 0)))
    return out


def _ancestors(path: str) -> list[str]:
    out, path = [], os.path.abspath(path)
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        out.append(path)
    return out


def _training_panel(page: _Page, runs: list[TrainInput]) -> None:
    panel = Panel("training", "Training",
                  "One line per run: " + ", ".join(f"{esc(r.name)}{'' if r.done else ' (running or stopped)'}"
                                                   for r in runs) + ".")
    for fig in (charts.train_curve(runs, "loss", x="tokens", title="train loss (x: tokens)", y_title="loss"),
                charts.val_curves(runs),
                charts.train_curve(runs, "tokens_per_s", x="step", title="throughput", y_title="tokens/s"),
                charts.train_curve(runs, "mfu", x="step", title="model FLOPs utilization", y_title="MFU",
                                   percent=True)):
        if fig is not None:
            page.figure(panel, fig)
    if not panel.charts:
        panel.body.append("<p class='muted'>No metrics logged yet.</p>")
    elif not any(r.get("mfu") is not None for run in runs for r in run.train):
        panel.body.append("<p class='muted'>MFU: not logged (a CPU run, or a GPU whose peak is unknown: "
                          "<code>--peak-tflops</code>).</p>")
    page.panels.append(panel)


def _ablation_panels(page: _Page, con, folders: list[str]) -> None:
    """One table per `curate ablate` folder given with --train: its results.parquet, per evaluation set."""
    for k, folder in enumerate(f for f in folders if os.path.isfile(os.path.join(f, "results.parquet"))):
        rows = queries.ablation_rows(con, os.path.join(os.path.abspath(folder), "results.parquet"))
        if not rows:
            continue
        panel = Panel("ablation" if k == 0 else f"ablation-{k + 1}", "Ablation: which data is better",
                      f"{esc(folder)}/results.parquet: the same model trained on each mixture for the same tokens "
                      "and scored on the same held-out texts; the difference to the first mixture with its "
                      "interval (over seeds, or a bootstrap over documents with one seed).")
        head = ["evaluation set", "mixture", "loss", "sd over seeds", "bits per byte", "Δ loss vs first", "interval",
                "verdict"]
        table = ["<table class='data'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
        for r in rows:
            ci = "" if r["ci_low"] is None else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
            cells = [esc(r["eval_set"]), esc(r["mixture"]), f"{_float(r['loss']):.4f}",
                     "" if r["loss_std"] is None else f"{r['loss_std']:.4f}",
                     "" if r["bits_per_byte"] is None else f"{r['bits_per_byte']:.4f}",
                     "" if r["ci_low"] is None else f"{_float(r['delta_vs_first']):+.4f}", ci, esc(r["verdict"])]
            table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        table.append("</tbody></table>")
        panel.body.append("".join(table))
        page.panels.append(panel)


def _samples_panel(page: _Page, con, run: RunInput, params: ReportParams) -> None:
    stage_signals: dict[str, list[str]] = {}
    for s in signal_table():
        stage_signals.setdefault(s.stage, []).append(s.column)
    stage_signals["langid"] = ["lang", "lang_score", "lang_runner_up", "lang_runner_up_share", "cjk_ratio"]
    stage_signals["dedup"] = ["dup_cluster_id", "dup_cluster_size", "dup_of"]
    stage_signals["pii"] = [f"pii_{t}" for t in queries.PII_TYPES]
    stage_signals["detox"] = stage_signals.get("detox", []) + ["toxic_terms"]
    samples = queries.sample_rejects(con, run.path, params.samples, params.sample_chars, params.sample_reasons,
                                     stage_signals)
    if not samples:
        return
    panel = Panel("samples", "What each rule removes: sample documents",
                  f"Up to {params.samples} rejected documents per reason (chosen by a hash of their id), with the "
                  f"signals of the stage that dropped them; texts cut to {params.sample_chars:,} characters.")
    for i, ((stage, reason), (n, docs)) in enumerate(samples.items()):
        parts = [f"<details class='reason' data-reason='{esc(reason)}'{' open' if i == 0 else ''}><summary>"
                 f"<b>{esc(stage)}</b> <code>{esc(reason)}</code> <span class='muted'>{n:,} "
                 f"document{'' if n == 1 else 's'}</span></summary>"]
        for doc in docs:
            parts.append(_sample_html(doc, params.sample_chars))
        parts.append("</details>")
        panel.body.append("".join(parts))
    page.panels.append(panel)


def _sample_html(doc: dict, chars: int) -> str:
    where = []
    if doc.get("url"):
        url = str(doc["url"])
        if urllib.parse.urlsplit(url.strip()).scheme.lower() in ("http", "https"):  # never javascript:, data: ...
            where.append(f"<a href='{esc(url)}' rel='noopener noreferrer nofollow' target='_blank'>{esc(url)}</a>")
        else:
            where.append(esc(url))
    if doc.get("path"):
        where.append(esc(doc["path"]))
    link = " · ".join(where)
    signals = " ".join(f"<span class='sig'>{esc(k)}={esc(_short(v))}</span>"
                       for k, v in (doc.get("signals") or {}).items() if v is not None)
    text = doc.get("text") or ""
    total = doc.get("text_chars") or 0
    cut = f"<span class='cut'> … (cut: {total:,} characters in all)</span>" if total > chars else ""
    lang = f" · {esc(doc['lang'])}" if doc.get("lang") else ""
    return (f"<div class='sample'><div class='meta'><code>{esc(doc.get('id'))}</code> {esc(doc.get('source'))}"
            f"{lang} · {link}</div><div class='signals'>{signals}</div><pre class='text'>{esc(text)}{cut}</pre></div>")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _funnel_table(rows: list[tuple]) -> str:
    out = ["<table class='data'><thead><tr><th>source</th><th>stage</th><th>docs in</th><th>docs out</th>"
           "<th>MB in</th><th>MB out</th><th>kept</th><th>rejected</th><th>skipped</th><th>seconds</th>"
           "<th>top reasons</th></tr></thead><tbody>"]
    for source, stage, din, dout, bin_, bout, share, rejected, skipped, seconds, top in rows:
        out.append(f"<tr><td>{esc(source)}</td><td>{esc(stage)}</td><td>{din:,}</td><td>{dout:,}</td>"
                   f"<td>{bin_ / 1e6:,.2f}</td><td>{bout / 1e6:,.2f}</td>"
                   f"<td>{'' if share is None else f'{share:.1%}'}</td><td>{rejected:,}</td><td>{skipped:,}</td>"
                   f"<td>{seconds:,.1f}</td><td class='reasons'>{esc(top)}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _num(value) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return esc(value)


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _frac(value) -> str:
    v = _float(value)
    return "" if v != v else f"{v:.2%}"


# ---- the page -----------------------------------------------------------------------------------------

STYLE = """
:root{--fg:#1d2329;--muted:#66707a;--line:#e3e6ea;--bg:#f6f7f9;--accent:#1f5fa8}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;color:var(--fg);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:16px 28px}
header h1{margin:0 0 4px;font-size:20px}header .path{color:var(--muted);word-break:break-all}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);padding:6px 28px;font-size:13px}
nav a{color:var(--accent);text-decoration:none;margin-right:14px}
main{padding:18px 28px;max-width:1600px}
section.panel{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin-bottom:18px}
section.panel h2{margin:0 0 4px;font-size:17px}.intro{color:var(--muted);margin:0 0 10px}
.grid{display:flex;flex-wrap:wrap;gap:8px}.chart{width:100%;min-height:240px}
.chart.half{width:calc(50% - 4px)}.chart.third{width:calc(33.3% - 6px)}
@media (max-width:1100px){.chart.half,.chart.third{width:100%}}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.ok{background:#e3f4e4;color:#1b5e20}.badge.partial{background:#fff1d6;color:#8a5300}
.summary{display:flex;flex-wrap:wrap;gap:22px;margin-top:8px}.summary div b{display:block;font-size:18px}
table.data{border-collapse:collapse;margin-top:10px;font-size:12.5px;width:100%}
table.data th,table.data td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:right;white-space:nowrap}
table.data th:first-child,table.data td:first-child,table.data td:nth-child(2),table.data th:nth-child(2){text-align:left}
table.data td.reasons{text-align:left;white-space:normal;color:var(--muted)}
details.reason{width:100%;border-top:1px solid var(--line);padding:6px 0}details.reason summary{cursor:pointer}
.sample{margin:8px 0 8px 18px;padding:8px 10px;background:var(--bg);border-radius:6px}
.sample .meta{font-size:12px;color:var(--muted);word-break:break-all}.sample .signals{font-size:12px;margin:3px 0}
.sig{display:inline-block;background:#e8eef7;border-radius:4px;padding:0 5px;margin:1px 4px 1px 0}
pre.text{white-space:pre-wrap;word-break:break-word;margin:4px 0 0;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;max-height:16em;overflow:auto}
.key{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 2px}
.cut,.muted{color:var(--muted)}.warn{background:#fff1d6;border:1px solid #f0c36d;border-radius:6px;padding:8px 12px;margin-bottom:14px}
"""

BOOT = """(function(){
  var divs = document.querySelectorAll('div[data-figure]'), pending = [];
  var template = JSON.parse(document.getElementById('chart-template').textContent);
  for (var i = 0; i < divs.length; i++) {
    var fig = JSON.parse(document.getElementById(divs[i].getAttribute('data-figure')).textContent);
    fig.layout.template = template;
    pending.push(Plotly.newPlot(divs[i], fig.data, fig.layout, {displaylogo: false, responsive: true, displayModeBar: 'hover'}));
  }
  Promise.all(pending).then(function(){ document.body.setAttribute('data-charts-drawn', String(divs.length)); });
})();"""

POLL = """(function(){
  var version = document.body.getAttribute('data-version');
  setInterval(function(){
    fetch('/version', {cache: 'no-store'}).then(function(r){ return r.text(); }).then(function(v){
      if (v && v !== version) { location.reload(); }
    }).catch(function(){});
  }, %d);
})();"""


def plotly_js() -> str:
    """plotly.min.js from the installed ``plotly`` wheel (no network)."""
    return resources.files("plotly").joinpath("package_data/plotly.min.js").read_text(encoding="utf-8")


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def _render(page: _Page, run: RunInput, tokens, mixture, train, params: ReportParams, refresh: str | None,
            poll_ms: int, seconds: float) -> str:
    from curate import __version__

    manifest = run.manifest
    scripts = [plotly_js(), BOOT] + ([POLL % poll_ms] if refresh is not None else [])
    csp = ""
    if params.csp:
        policy = ("default-src 'none'; script-src " + " ".join(_hash(s) for s in scripts) +
                  "; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'"
                  + ("; connect-src 'self'" if refresh is not None else ""))
        csp = f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">'
    status = ("<span class='badge ok'>complete</span>" if run.complete else
              f"<span class='badge partial'>partial: {run.tasks_finished:,} task(s) finished so far"
              f"{', ' + str(len(run.failed)) + ' failed' if run.failed else ''}</span>")
    warn = "" if run.complete else (
        "<div class='warn'>This run is not finished: the report shows what the finished tasks wrote. "
        + ("Failed tasks: " + esc("; ".join(f"{k}: {v}" for k, v in list(run.failed.items())[:5])) + ". "
           if run.failed else "")
        + "Rerun <code>curate run</code> with the same command to finish it.</div>")
    totals = [("documents kept", manifest.get("docs")), ("rejected", manifest.get("rejects")),
              ("tasks finished", run.tasks_finished)]
    inputs = [("tokens", tokens.path if tokens else None), ("mixture", mixture.path if mixture else None)]
    inputs += [("training run", t.path) for t in train]
    nav = "".join(f"<a href='#{p.id}'>{esc(p.title)}</a>" for p in page.panels)
    sections = []
    for p in page.panels:
        sections.append(f"<section class='panel' id='{p.id}' data-panel='{p.id}' data-charts='{p.charts}'>"
                        f"<h2>{esc(p.title)}</h2><p class='intro'>{p.intro}</p>"
                        f"<div class='grid'>{''.join(p.body)}</div></section>")
    data = f'<script type="application/json" id="chart-template">{charts.template_json()}</script>' + "".join(
        f'<script type="application/json" id="{div}-data">{body}</script>' for div, body in page.figures)
    title = f"curate report: {os.path.basename(run.path.rstrip(os.sep)) or run.path}"
    version_attr = f" data-version='{esc(refresh)}'" if refresh is not None else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"{csp}<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{STYLE}</style>"
        f"<script>{scripts[0]}</script></head>"
        f"<body data-complete='{str(run.complete).lower()}' data-panels='{' '.join(p.id for p in page.panels)}'{version_attr}>"
        f"<header><h1>{esc(title)} {status}</h1><div class='path'>{esc(run.path)}</div>"
        "<div class='summary'>" + "".join(f"<div><b>{_num(v) if v is not None else '?'}</b>{esc(k)}</div>"
                                          for k, v in totals) +
        "".join(f"<div><b>&nbsp;</b>{esc(k)}: {esc(v)}</div>" for k, v in inputs if v) +
        f"</div><div class='muted' style='margin-top:6px'>curate {esc(__version__)} · built "
        f"{esc(time.strftime('%Y-%m-%d %H:%M:%S'))} in {seconds:.1f}s · run started {esc(manifest.get('started', '?'))}"
        f"{' · finished ' + esc(manifest.get('finished')) if manifest.get('finished') else ''}</div></header>"
        f"<nav>{nav}</nav><main>{warn}{''.join(sections)}</main>{data}"
        + "".join(f"<script>{s}</script>" for s in scripts[1:]) + "</body></html>"
    )


def describe(report: Report) -> str:
    """One line for the console."""
    return (f"{len(report.panels)} panels ({', '.join(report.panels)})"
            f"{'; PARTIAL run: only finished tasks are shown' if report.partial else ''}; built in {report.seconds:.1f}s")
