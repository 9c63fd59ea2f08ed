"""Plotly figures from the report's query results (one function per chart).

Every string that came from the data (source names, languages, reasons, file and component names)
goes through ``label`` before it reaches a figure: Plotly reads a small HTML subset in its text
(``<b>``, ``<a href>``, ``<br>``), so a crawled string is entity-escaped and drawn as the text it is.
The figures are serialized by ``plotly.io.to_json``, which writes ``<``, ``>`` and ``/`` as JSON
escapes, so no string can close the ``<script type="application/json">`` block that holds it.
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from curate.dashboards.queries import GROUPS, Histogram

COLORS = {"kept": "#2e7d32", "rejected here": "#c62828", "rejected later": "#f0a35e", "skip": "#90a4ae"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


#: Figures are built with no template (Plotly deep-copies one into every figure: most of the build time and
#: of the page's size); the page applies this one template to every figure when it draws them.
TEMPLATE = "plotly_white"


def template_json() -> str:
    import plotly.io as pio

    from plotly.io.json import to_json_plotly

    return to_json_plotly(pio.templates[TEMPLATE].to_plotly_json())  # escapes < > / like every figure


def no_template():
    """A context in which new figures get no template (restores the caller's default after)."""
    import contextlib

    import plotly.io as pio

    @contextlib.contextmanager
    def scope():
        saved = pio.templates.default
        pio.templates.default = None
        try:
            yield
        finally:
            pio.templates.default = saved

    return scope()


def label(text) -> str:
    """A data string as Plotly text: entities for ``& < > "`` so Plotly's HTML subset never applies."""
    return html.escape("" if text is None else str(text), quote=True)


def _layout_dict(*, height: int, title: str | None = None) -> dict:
    return dict(height=height, margin=dict(l=60, r=20, t=40 if title else 20, b=50),
                title=dict(text=title, font=dict(size=14)) if title else None,
                legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), font=dict(size=12))


def _layout(fig: go.Figure, *, height: int, title: str | None = None, **extra) -> go.Figure:
    fig.update_layout(**_layout_dict(height=height, title=title), **extra)
    return fig


def funnel(rows: list[tuple], limit: int = 8) -> go.Figure:
    """Per source (the ``limit`` largest), documents and MB left after each stage, in pipeline order."""
    by_source: dict[str, list[tuple]] = {}
    for row in rows:
        by_source.setdefault(row[0], []).append(row)
    sources = sorted(by_source, key=lambda s: -by_source[s][0][2])[:limit]
    heights = [max(3, len(by_source[s])) for s in sources]
    fig = make_subplots(rows=len(sources), cols=2, row_heights=heights, vertical_spacing=0.25 / max(1, len(sources)),
                        horizontal_spacing=0.12,
                        subplot_titles=[t for s in sources for t in (f"{label(s)}: documents", f"{label(s)}: MB")])
    for i, source in enumerate(sources):
        stages = by_source[source]
        color = PALETTE[i % len(PALETTE)]
        for col, (index, scale, unit) in enumerate(((3, 1, "documents"), (5, 1e6, "MB")), start=1):
            fig.add_trace(go.Funnel(
                name=label(source), y=[label(r[1]) for r in stages], x=[r[index] / scale for r in stages],
                textinfo="value+percent initial", texttemplate="%{value:,.4~g} (%{percentInitial:.1%})",
                marker=dict(color=color), showlegend=False, connector=dict(fillcolor="#eef1f5"),
                hovertemplate="%{y}: %{x:,.6~g} " + unit + "<extra>" + label(source) + "</extra>"), i + 1, col)
    return _layout(fig, height=sum(28 * h + 70 for h in heights) + 40)


def reasons(rows: list[tuple[str, str, str, int]], order: list[str], limit: int = 60) -> go.Figure:
    """Reject and skip reasons, grouped by stage in pipeline order, most documents first within a stage."""
    position = {stage: i for i, stage in enumerate(order)}
    rows = sorted(rows, key=lambda r: (position.get(r[0], len(order)), -r[3], r[1]))[:limit]
    fig = go.Figure()
    stages = list(dict.fromkeys(r[0] for r in rows))
    for i, stage in enumerate(stages):
        mine = [r for r in rows if r[0] == stage]
        fig.add_trace(go.Bar(
            name=label(stage), orientation="h", x=[r[3] for r in mine],
            y=[f"{label(r[1])}{' (skip)' if r[2] == 'skip' else ''}" for r in mine],
            marker=dict(color=PALETTE[i % len(PALETTE)]),
            hovertemplate="%{y}: %{x:,} documents<extra>%{fullData.name}</extra>"))
    fig.update_yaxes(autorange="reversed", categoryorder="array",
                     categoryarray=[f"{label(r[1])}{' (skip)' if r[2] == 'skip' else ''}" for r in rows])
    spread = rows and max(r[3] for r in rows) > 100 * max(1, min(r[3] for r in rows))
    fig.update_xaxes(title="documents", type="log" if spread else "linear")
    return _layout(fig, height=max(240, 24 * len(rows) + 100))


def languages(rows: list[tuple], limit: int) -> go.Figure:
    """Kept and rejected documents per source and language (the ``limit`` largest languages of each source)."""
    kept, rejected, cats_source, cats_lang = [], [], [], []
    by_source: dict[str, list[tuple]] = {}
    for row in rows:
        by_source.setdefault(row[0], []).append(row)
    for source, langs in by_source.items():
        langs = sorted(langs, key=lambda r: -(r[2] + r[3]))
        head, tail = langs[:limit], langs[limit:]
        if tail:
            head.append((source, f"{len(tail)} others", sum(r[2] for r in tail), sum(r[3] for r in tail), None))
        for r in head:
            cats_source.append(label(source))
            cats_lang.append(label(r[1]))
            kept.append(r[2])
            rejected.append(r[3])
    fig = go.Figure([
        go.Bar(name="kept", x=[cats_source, cats_lang], y=kept, marker_color=COLORS["kept"]),
        go.Bar(name="rejected", x=[cats_source, cats_lang], y=rejected, marker_color=COLORS["rejected here"]),
    ])
    fig.update_yaxes(title="documents")
    return _layout(fig, height=340, barmode="stack")


def signal(hist: Histogram, marks: list[tuple[str, float]], note: str) -> go.Figure:
    """A signal's histogram, stacked kept / rejected by its stage / rejected later, threshold lines on top.

    Built in one piece (traces, shapes and annotations as plain dicts, validated once by ``go.Figure``):
    a report draws dozens of these, and Plotly's incremental ``update_*``/``add_vline`` calls cost
    tens of milliseconds each.
    """
    log = hist.transform == "log10"
    x = hist.centers()
    hover = [_bin_text(hist, i) for i in range(hist.bins)]
    traces = [dict(type="bar", name=group, x=x, y=hist.counts[group], width=hist.width, marker_color=COLORS[group],
                   showlegend=False, customdata=hover, hovertemplate="%{customdata}: %{y:,}<extra>" + group + "</extra>")
              for group in GROUPS if any(hist.counts[group])]
    span = hist.width * hist.bins
    shapes, annotations = [], []
    for i, (text, value) in enumerate(marks):
        at = math.log10(max(value, 1.0)) if log else value
        right_half = (at - hist.lo) > 0.6 * span  # label on the side with room
        shapes.append(dict(type="line", xref="x", yref="paper", x0=at, x1=at, y0=0, y1=1,
                           line=dict(color="#111", dash="dash", width=1.5)))
        annotations.append(dict(xref="x", yref="paper", x=at, y=1, yshift=-14 * i, showarrow=False,
                                xanchor="right" if right_half else "left", yanchor="top", text=label(text),
                                font=dict(size=10), bgcolor="rgba(255,255,255,.8)"))
    xaxis = dict(range=[hist.lo, hist.lo + span],
                 title=dict(text=label(hist.signal.column) + (" (log scale)" if log else ""), font=dict(size=11)))
    if log:
        top = int(math.ceil(hist.lo + span))
        xaxis.update(tickvals=list(range(0, top + 1)), ticktext=[_decade(d) for d in range(0, top + 1)])
    title = label(hist.signal.label)
    if note:
        title += f"<br><span style='font-size:10px;color:#666'>{label(note)}</span>"
    return go.Figure(data=traces, layout=dict(
        **_layout_dict(height=280, title=title), barmode="stack", bargap=0, xaxis=xaxis,
        yaxis=dict(title=dict(text="documents")), shapes=shapes, annotations=annotations))


def _bin_text(hist: Histogram, i: int) -> str:
    lo, hi = hist.lo + i * hist.width, hist.lo + (i + 1) * hist.width
    if hist.transform == "log10":
        lo, hi = 10 ** lo, 10 ** hi
    last = i == hist.bins - 1 and hist.clipped
    return f"{lo:.4g} .. {hi:.4g}" + (" and above" if last else "")


def _decade(d: int) -> str:
    value = 10 ** d
    return f"{value // 10**6}M" if value >= 10**6 else f"{value // 1000}k" if value >= 1000 else str(value)


def dedup(rows: list[tuple[int, int, int]]) -> go.Figure:
    """Near-duplicate and exact clusters by size: how many clusters of each size."""
    fig = go.Figure(go.Bar(x=[str(r[0]) for r in rows], y=[r[1] for r in rows], customdata=[r[2] for r in rows],
                           marker_color=PALETTE[0], name="clusters",
                           hovertemplate="size %{x}: %{y:,} clusters, %{customdata:,} documents<extra></extra>"))
    fig.update_xaxes(title="cluster size (documents)", type="category")
    fig.update_yaxes(title="clusters", type="log" if rows and max(r[1] for r in rows) > 50 else "linear")
    return _layout(fig, height=300)


def pii(rows: list[tuple[str, str, int]]) -> go.Figure:
    """Placeholders written per type and source."""
    from curate.stages.pii import PLACEHOLDERS

    fig = go.Figure()
    sources = list(dict.fromkeys(r[0] for r in rows))
    for i, source in enumerate(sources):
        mine = [r for r in rows if r[0] == source]
        fig.add_trace(go.Bar(name=label(source), x=[label(PLACEHOLDERS.get(r[1], r[1])) for r in mine],
                             y=[r[2] for r in mine], marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_yaxes(title="placeholders written")
    return _layout(fig, height=300, barmode="group")


def tokens(rows: list[tuple[str, str, int, int, int]]) -> go.Figure:
    """Tokens per source, stacked by language."""
    fig = go.Figure()
    langs = list(dict.fromkeys(r[1] for r in sorted(rows, key=lambda r: -r[3])))
    for i, lang in enumerate(langs):
        mine = [r for r in rows if r[1] == lang]
        fig.add_trace(go.Bar(name=label(lang), x=[label(r[0]) for r in mine], y=[r[3] for r in mine],
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate="%{x}: %{y:,} tokens<extra>%{fullData.name}</extra>"))
    fig.update_yaxes(title="tokens")
    return _layout(fig, height=320, barmode="stack")


def mixture(rows: list[dict]) -> go.Figure:
    """Weights asked and realized per component, and the epochs each component is drawn over the budget."""
    names = [label(r["component"]) for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("weight", "epochs over the budget"))
    fig.add_trace(go.Bar(name="asked", x=names, y=[r["weight_asked"] for r in rows], marker_color=PALETTE[0]), 1, 1)
    fig.add_trace(go.Bar(name="realized", x=names, y=[r["weight_realized"] for r in rows], marker_color=PALETTE[1]), 1, 1)
    fig.add_trace(go.Bar(name="epochs", x=names, y=[r["epochs"] for r in rows], marker_color=PALETTE[2],
                         showlegend=False), 1, 2)
    _layout(fig, height=340, barmode="group")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.12, x=0))
    return fig


def _thin(points: list[tuple], limit: int = 2000) -> list[tuple]:
    """At most ``limit`` points of a curve (every k-th, and always the last)."""
    if len(points) <= limit:
        return points
    step = math.ceil(len(points) / limit)
    return points[::step] + ([points[-1]] if (len(points) - 1) % step else [])


def train_curve(runs, key: str, *, x: str, title: str, y_title: str, percent: bool = False) -> go.Figure | None:
    """One line per run of a train metric (``loss``, ``tokens_per_s``, ``mfu``); None when no run logged it."""
    fig = go.Figure()
    drawn = 0
    for i, run in enumerate(runs):
        points = _thin([(r.get(x), r.get(key)) for r in run.train if r.get(key) is not None and r.get(x) is not None])
        if not points:
            continue
        drawn += 1
        fig.add_trace(go.Scatter(name=label(run.name), x=[p[0] for p in points], y=[p[1] for p in points],
                                 mode="lines", line=dict(color=PALETTE[i % len(PALETTE)], width=1.6)))
    if not drawn:
        return None
    fig.update_xaxes(title=x)
    fig.update_yaxes(title=y_title, tickformat=".1%" if percent else None)
    return _layout(fig, height=300, title=title)


def val_curves(runs) -> go.Figure | None:
    """Validation loss per mixture component: one small chart per component, one line per run."""
    components = list(dict.fromkeys(r.get("component", "all") for run in runs for r in run.val))
    if not components:
        return None
    components.sort(key=lambda c: (c != "all", str(c)))
    cols = min(3, len(components))
    rows = math.ceil(len(components) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[label(c) for c in components], shared_xaxes=False)
    for i, run in enumerate(runs):
        for j, component in enumerate(components):
            points = _thin([(r.get("tokens"), r.get("loss")) for r in run.val
                            if r.get("component", "all") == component and r.get("loss") is not None])
            if not points:
                continue
            fig.add_trace(go.Scatter(name=label(run.name), showlegend=False,
                                     x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                     line=dict(color=PALETTE[i % len(PALETTE)], width=1.6), marker=dict(size=4)),
                          row=j // cols + 1, col=j % cols + 1)
    title = "validation loss per component (x: tokens)" + (", runs coloured as above" if len(runs) > 1 else "")
    return _layout(fig, height=260 * rows + 60, title=title)
