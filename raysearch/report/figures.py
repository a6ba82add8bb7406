"""Plotly figures of the report, one function per figure, from the plain tables of ``tables``/``search``.

Colours follow the sampler (the same sampler has the same colour in every figure of a report). Every
function returns a ``plotly.graph_objects.Figure``; the page embeds them (``page``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from raysearch.report.search import LOG_SPAN, Trials
from raysearch.report.tables import BANDS, Curve

TEMPLATE = "plotly_white"
STAGE_DASH = {"pretrain": "dot", "finetune": "solid", "train": "solid"}
PALETTE = qualitative.Plotly + qualitative.D3


def sampler_colours(samplers: Sequence[str]) -> dict[str, str]:
    """One colour per sampler name, stable for the whole report."""
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sorted(set(samplers)))}


def _layout(fig: go.Figure, title: str, height: int = 380, **kwargs: Any) -> go.Figure:
    kwargs.setdefault("margin", {"l": 60, "r": 20, "t": 60, "b": 50})
    fig.update_layout(template=TEMPLATE, title={"text": title, "x": 0.01, "font": {"size": 15}}, height=height,
                      **kwargs)
    return fig


def mean_std(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], field: str) -> list[dict[str, Any]]:
    """Per distinct ``keys`` value (first-seen order): mean, sample std (ddof=1; 0 for one value) and
    count of ``field`` over ``rows``, ignoring NaN."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        value = row[field]
        if value is not None and not math.isnan(value):
            groups.setdefault(tuple(row[k] for k in keys), []).append(float(value))
    out = []
    for key, values in groups.items():
        arr = np.asarray(values)
        out.append({**dict(zip(keys, key, strict=True)), "mean": float(arr.mean()),
                    "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n": int(arr.size)})
    return out


# --------------------------------------------------------------------------- training
def curves_figure(curves: Sequence[Curve], colours: Mapping[str, str], metric: str) -> go.Figure:
    """Validation metric vs epoch, one line per run and stage (dotted: ICPNS's pre-training)."""
    fig = go.Figure()
    shown: set[tuple[str, str]] = set()
    for c in curves:
        key = (c.run.sampler, c.stage)
        label = c.run.sampler if c.stage in ("train", "finetune") else f"{c.run.sampler} ({c.stage})"
        fig.add_trace(go.Scatter(
            x=list(c.epochs), y=list(c.values), mode="lines+markers", name=label, legendgroup=label,
            showlegend=key not in shown, line={"color": colours[c.run.sampler], "dash": STAGE_DASH.get(c.stage)},
            marker={"size": 4},
            hovertemplate=f"{c.run.sampler} seed {c.run.seed} {c.stage}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>"))
        shown.add(key)
    last = max((max(c.epochs) for c in curves if c.epochs), default=1)
    return _layout(fig, f"Validation {metric} per epoch (stages counted consecutively)",
                   xaxis={"title": {"text": "epoch"}, "dtick": max(1, math.ceil(last / 12))},
                   yaxis_title=f"valid {metric}")


# --------------------------------------------------------------------------- search
def importance_figure(trials: Trials, importances: Mapping[str, float]) -> go.Figure:
    keys = sorted(importances, key=importances.get)  # type: ignore[arg-type]
    fig = go.Figure(go.Bar(x=[importances[k] for k in keys], y=keys, orientation="h",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    return _layout(fig, f"{trials.sampler}: importances for valid {trials.metric} (fANOVA)",
                   height=140 + 40 * len(keys), xaxis_title="importance (sums to 1)")


def _axis(values: list[Any], label: str, numeric: bool) -> dict[str, Any]:
    """A parallel-coordinates dimension; categorical values become codes, wide positive ranges log10."""
    if not numeric:
        names = sorted({str(v) for v in values})
        return {"label": label, "values": [names.index(str(v)) for v in values],
                "tickvals": list(range(len(names))), "ticktext": names}
    low, high = min(values), max(values)
    if low > 0 and high / low >= LOG_SPAN:
        ticks = sorted(set(values)) if len(set(values)) <= 8 else [float(t) for t in np.geomspace(low, high, 5)]
        return {"label": f"{label} (log)", "values": list(np.log10(values)), "tickvals": list(np.log10(ticks)),
                "ticktext": [f"{t:.3g}" for t in ticks]}
    return {"label": label, "values": list(values)}


def parallel_figure(trials: Trials) -> go.Figure:
    """One line per trial across the searched parameters and its best validation value."""
    dims = [_axis(trials.values(k), k, trials.numeric(k)) for k in trials.params]
    dims.append({"label": f"valid {trials.metric}", "values": trials.values("value")})
    fig = go.Figure(go.Parcoords(line={"color": trials.values("value"), "colorscale": "Viridis", "showscale": True,
                                       "colorbar": {"title": {"text": trials.metric}}}, dimensions=dims))
    return _layout(fig, f"{trials.sampler}: the {len(trials.rows)} trials of the search", height=420,
                   margin={"l": 80, "r": 80, "t": 90, "b": 40})


def metric_vs_figure(trials: Sequence[Trials], key: str, label: str, colours: Mapping[str, str]) -> go.Figure:
    """Best validation value of each trial against one parameter (one trace per sampler)."""
    fig = go.Figure()
    values: list[float] = []
    for t in trials:
        values += t.values(key)
        fig.add_trace(go.Scatter(
            x=t.values(key), y=t.values("value"), mode="markers", name=t.sampler, text=t.values("name"),
            marker={"color": colours[t.sampler], "size": 9, "opacity": 0.8},
            hovertemplate=f"%{{text}}<br>{key} %{{x}}<br>valid {t.metric} %{{y:.4f}}<extra></extra>"))
    log = min(values) > 0 and max(values) / min(values) >= LOG_SPAN
    return _layout(fig, f"Best validation {trials[0].metric} vs {label}", xaxis_title=key,
                   xaxis_type="log" if log else None, yaxis_title=f"valid {trials[0].metric}")


def heatmap_figure(trials: Trials, x_key: str, y_key: str, bins: int = 5) -> go.Figure:
    """Mean best validation value over the trials in each (``x_key`` value, ``y_key`` bin) cell.

    ``y_key`` (GDNS alpha, continuous) is cut into ``bins`` equal-width bins over its observed range
    unless it takes at most ``bins`` distinct values (a grid), which are used as they are; ``x_key``
    (the group size, a choice) keeps its values.
    """
    xs, ys, vs = trials.values(x_key), np.asarray(trials.values(y_key), dtype=float), trials.values("value")
    x_levels = sorted(set(xs))
    distinct = sorted(set(ys.tolist()))
    if len(distinct) <= bins:
        y_index, y_labels = np.searchsorted(distinct, ys), [f"{v:.3g}" for v in distinct]
    else:
        edges = np.linspace(ys.min(), ys.max(), bins + 1)
        y_index = np.clip(np.searchsorted(edges, ys, side="right") - 1, 0, bins - 1)
        y_labels = [f"{edges[i]:.2f}–{edges[i + 1]:.2f}" for i in range(bins)]
    codes = y_index * len(x_levels) + np.searchsorted(x_levels, xs)
    size = len(y_labels) * len(x_levels)
    counts = np.bincount(codes, minlength=size)
    sums = np.bincount(codes, weights=vs, minlength=size)
    z = np.divide(sums, counts, out=np.full(size, np.nan), where=counts > 0).reshape(len(y_labels), len(x_levels))
    n = counts.reshape(z.shape)
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), x=[str(v) for v in x_levels], y=y_labels, customdata=n.tolist(), colorscale="Viridis",
        colorbar={"title": {"text": trials.metric}},
        hovertemplate=f"{x_key} %{{x}}<br>{y_key} %{{y}}<br>mean valid {trials.metric} %{{z:.4f}}"
                      "<br>trials %{customdata}<extra></extra>"))
    return _layout(fig, f"{trials.sampler}: {y_key} x {x_key} (mean best validation {trials.metric})",
                   xaxis_title=x_key, yaxis_title=y_key, xaxis_type="category", yaxis_type="category")


def progress_figure(trials: Sequence[Trials], colours: Mapping[str, str]) -> go.Figure:
    """Each trial's best validation value in start order, with the best so far."""
    fig = go.Figure()
    for t in trials:
        order, values = t.values("order"), t.values("value")
        fig.add_trace(go.Scatter(x=order, y=values, mode="markers", name=t.sampler,
                                 legendgroup=t.sampler, marker={"color": colours[t.sampler], "size": 7, "opacity": 0.6},
                                 text=t.values("name"), hovertemplate="%{text}: %{y:.4f}<extra></extra>"))
        fig.add_trace(go.Scatter(x=order, y=np.maximum.accumulate(values).tolist(), mode="lines",
                                 name=f"{t.sampler} best so far", legendgroup=t.sampler, showlegend=False,
                                 line={"color": colours[t.sampler], "shape": "hv"}))
    return _layout(fig, f"Search progress: each trial's best valid {trials[0].metric}, and the best so far",
                   xaxis_title="trial (start order)", yaxis_title=f"valid {trials[0].metric}")


# --------------------------------------------------------------------------- communities
def community_sizes_figure(summary: Mapping[str, Any], title: str) -> go.Figure:
    comms = summary["communities"]
    fig = go.Figure(go.Bar(x=[str(c["community"]) for c in comms], y=[c["users"] for c in comms],
                           customdata=[[c["interactions"], c["support"]] for c in comms],
                           hovertemplate="community %{x}: %{y} users<br>%{customdata[0]} train interactions, "
                                         "%{customdata[1]} distinct items<extra></extra>"))
    return _layout(fig, title, xaxis_title="community", yaxis_title="users", xaxis_type="category")


def community_popularity_figure(rows: Sequence[Mapping[str, Any]], title: str) -> go.Figure:
    """Top items of each community: in-community share against global share (above the diagonal: the
    community likes the item more than everyone does)."""
    fig = go.Figure()
    for c in sorted({r["community"] for r in rows}):
        mine = [r for r in rows if r["community"] == c]
        fig.add_trace(go.Scatter(
            x=[r["global_share"] for r in mine], y=[r["in_share"] for r in mine], mode="markers",
            name=f"community {c}", marker={"size": 8, "color": PALETTE[c % len(PALETTE)], "opacity": 0.85},
            customdata=[[r["item"], r["in_count"], r["global_count"]] for r in mine],
            hovertemplate="item %{customdata[0]}<br>in community: %{customdata[1]} (%{y:.2%})"
                          "<br>global: %{customdata[2]} (%{x:.2%})<extra></extra>"))
    top = max([r["in_share"] for r in rows] + [r["global_share"] for r in rows]) * 1.05 if rows else 1.0
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="in = global",
                             line={"color": "#888", "dash": "dash"}, hoverinfo="skip"))
    return _layout(fig, title, height=420, xaxis_title="global popularity (share of train interactions)",
                   yaxis_title="in-community popularity (share of the community's)",
                   xaxis_tickformat=".1%", yaxis_tickformat=".1%")


def community_metrics_figure(by_community: Mapping[str, Mapping[str, float]], summary: Mapping[str, Any],
                             metric: str, overall: float, title: str) -> go.Figure:
    """Test ``metric`` of each community's users, next to the run's overall value."""
    sizes = {str(c["community"]): c["users"] for c in summary.get("communities", [])}
    keys = sorted(by_community, key=lambda k: int(k) if str(k).lstrip("-").isdigit() else 0)
    fig = go.Figure(go.Bar(x=[str(k) for k in keys], y=[by_community[k].get(metric) for k in keys],
                           customdata=[sizes.get(str(k)) for k in keys], name=f"test {metric}",
                           hovertemplate="community %{x} (%{customdata} users): %{y:.4f}<extra></extra>"))
    if not math.isnan(overall):
        fig.add_hline(y=overall, line_dash="dash", line_color="#444", annotation_text=f"all users {overall:.4f}")
    return _layout(fig, title, xaxis_title="community", yaxis_title=f"test {metric}", xaxis_type="category")


# --------------------------------------------------------------------------- breakdowns and cost
def bands_figure(rows: Sequence[Mapping[str, Any]], k: int, colours: Mapping[str, str]) -> go.Figure:
    """Per popularity band: test recall@K and the share of top-K slots (mean over runs, std bars)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"test recall@{k} by band of the held-out item",
                                                        f"share of the top-{k} slots by item band"))
    for col, kind in ((1, "recall"), (2, "share")):
        stats = mean_std([r for r in rows if r["kind"] == kind], ("sampler", "band"), "value")
        for sampler in sorted({s["sampler"] for s in stats}):
            mine = {s["band"]: s for s in stats if s["sampler"] == sampler}
            bands = [b for b in BANDS if b in mine]
            fig.add_trace(go.Bar(
                x=bands, y=[mine[b]["mean"] for b in bands], name=sampler, legendgroup=sampler,
                showlegend=col == 1, marker_color=colours[sampler],
                error_y={"type": "data", "array": [mine[b]["std"] for b in bands]},
                customdata=[mine[b]["n"] for b in bands],
                hovertemplate=f"{sampler} %{{x}}: %{{y:.4f}} (%{{customdata}} runs)<extra></extra>"), row=1, col=col)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    return _layout(fig, "Popularity bands (head / mid / tail, from train popularity)", barmode="group")


def cost_figure(rows: Sequence[Mapping[str, Any]], colours: Mapping[str, str]) -> go.Figure:
    """Time per epoch, sampling share of the step and draws per second of each sampler's own stage."""
    panels = (("epoch_seconds", "time per epoch (s)"), ("sampling_share", "sampling share of the step"),
              ("draws_per_second", "draws per second of sampling"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels])
    for col, (field, _) in enumerate(panels, start=1):
        stats = {s["sampler"]: s for s in mean_std(rows, ("sampler",), field)}
        samplers = sorted(stats)
        fig.add_trace(go.Bar(
            x=samplers, y=[stats[s]["mean"] for s in samplers], showlegend=False,
            marker_color=[colours[s] for s in samplers],
            error_y={"type": "data", "array": [stats[s]["std"] for s in samplers]},
            customdata=[stats[s]["n"] for s in samplers],
            hovertemplate="%{x}: %{y:.4g} (%{customdata} runs)<extra></extra>"), row=1, col=col)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=3)
    return _layout(fig, "Cost of each sampler's own stage (mean over runs; ICPNS: fine-tuning)")


VERDICT_SYMBOL = {"best": "star", "tied": "circle", "worse": "circle-open", "untested": "x"}


def accuracy_cost_figure(costs: Sequence[Any], colours: Mapping[str, str], metric: str,
                         standing: Mapping[str, str]) -> go.Figure:
    """Test ``metric`` (mean ± std over the tested runs) against each sampler's total compute in minutes
    (``tables.SamplerCost``), one point per sampler. ``standing``: per sampler ``best``, ``tied`` (not
    distinguishable from the best), ``worse`` or ``untested`` (no verdict), which sets the marker."""
    fig = go.Figure()
    for c in costs:
        minutes = c.seconds / 60.0
        state = standing.get(c.sampler, "untested")
        fig.add_trace(go.Scatter(
            x=[minutes], y=[c.mean], mode="markers+text", name=c.sampler, text=[c.sampler], textposition="top center",
            marker={"color": colours[c.sampler], "size": 18 if state == "best" else 13, "symbol": VERDICT_SYMBOL[state],
                    "line": {"width": 2, "color": colours[c.sampler]}},
            error_y={"type": "data", "array": [0.0 if math.isnan(c.std) else c.std]},
            hovertemplate=(f"{c.sampler} ({state})<br>test {metric} %{{y:.4f}}<br>%{{x:.1f}} min in all: "
                           f"{c.trials} trials ({c.trial_epochs} epochs), {c.tested_runs} tested runs"
                           + (f", {c.pretraining_runs} shared pre-training" if c.pretraining_runs else "")
                           + "<extra></extra>")))
    spread = [c.seconds for c in costs if c.seconds > 0]
    log_x = bool(spread) and max(spread) / min(spread) > 10
    return _layout(fig, f"Test {metric} against total compute (★ best; ● indistinguishable from it; ○ below it)",
                   height=400, showlegend=False,
                   xaxis={"title": {"text": "total compute, minutes (search + tested runs + shared pre-training)"},
                          **({"type": "log"} if log_x else {"rangemode": "tozero"})},
                   yaxis_title=f"test {metric}")


def scale_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """``raysearch bench scale`` rows against the number of workers, one line per backbone."""
    panels = (("epoch_seconds", "time per epoch (s)"), ("draws_per_second", "draws per second"),
              ("comm_mb", "MB sent per step per worker"), ("memory_mb", "params + optimiser MB per worker"))
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[1] for p in panels])
    models = sorted({r["model"] for r in rows})
    for m_index, model in enumerate(models):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["workers"])
        series = {
            "epoch_seconds": [r["epoch_seconds"] for r in mine],
            "draws_per_second": [r["draws_per_second"] for r in mine],
            "comm_mb": [(r["comm_bytes_per_step"] or 0) / 2**20 for r in mine],
            "memory_mb": [(max(r["param_bytes"] or [0]) + max(r["optimizer_bytes"] or [0])) / 2**20 for r in mine],
        }
        for i, (field, _) in enumerate(panels):
            fig.add_trace(go.Scatter(x=[r["workers"] for r in mine], y=series[field], mode="lines+markers", name=model,
                                     legendgroup=model, showlegend=i == 0,
                                     line={"color": PALETTE[m_index % len(PALETTE)]}), row=i // 2 + 1, col=i % 2 + 1)
    fig.update_xaxes(title_text="workers", dtick=1)
    return _layout(fig, "Scale: distributed training by number of workers", height=620)
