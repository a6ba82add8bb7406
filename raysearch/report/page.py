"""The report page: sections of tables, figures and notes, rendered with the Jinja2 template that ships
in ``dashboards/`` (package ``raysearch.dashboards``) into one self-contained HTML file.

plotly.js is embedded once, inline, in the page head; each figure is a div plus the script that draws
it. The page loads nothing from the network.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from raysearch.evaluation.significance import PairedTest, Verdict
from raysearch.report import figures as F
from raysearch.report.runs import TrackedRun
from raysearch.report.search import Trials, importance_note, param_importances, search_trials
from raysearch.report.tables import (
    Block,
    Comparison,
    SamplerCost,
    band_k,
    band_rows,
    block_verdict,
    blocks,
    community_items,
    community_run,
    comparison,
    cost_rows,
    curves,
    metric_label,
    selection_key,
    significance,
    total_costs,
)
from raysearch.version import code_version

TEMPLATE = "report.html.j2"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
K_KEY, ALPHA_KEY, GROUP_KEY = "sampler.n_communities", "sampler.alpha", "sampler.group_size"


# --------------------------------------------------------------------------- page parts
@dataclass(frozen=True)
class Heading:
    text: str
    kind: str = "heading"


@dataclass(frozen=True)
class Note:
    text: str
    kind: str = "note"


@dataclass(frozen=True)
class Plot:
    name: str  # what the figure shows, e.g. curves/synthetic-mf-full (the div's data-figure)
    html: str
    kind: str = "plot"


@dataclass(frozen=True)
class Table:
    comparison: Comparison
    kind: str = "table"


@dataclass(frozen=True)
class SignificanceTable:
    """Paired tests over test users (``tables.significance``) of one block."""

    tests: tuple[PairedTest, ...]
    kind: str = "significance"


@dataclass(frozen=True)
class VerdictPart:
    """A block's verdict in words (``significance.Verdict``), or why there is none (``missing``)."""

    verdict: Verdict | None
    missing: str = ""
    kind: str = "verdict"


@dataclass(frozen=True)
class BudgetTable:
    """Per sampler of a block, what its result cost in all (``tables.SamplerCost``)."""

    costs: tuple[SamplerCost, ...]
    kind: str = "budget"


@dataclass(frozen=True)
class Grid:
    """Plots and notes side by side; ``layout``: ``even`` (equal columns) or ``wide`` (1 : 2)."""

    parts: tuple[Any, ...]
    layout: str = "even"
    kind: str = "grid"


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    intro: str
    parts: list[Any] = field(default_factory=list)


class _Plots:
    """Turns figures into page parts with unique div ids."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, name: str, fig) -> Plot:
        import markupsafe
        import plotly.io as pio

        self.count += 1
        html = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"figure-{self.count}",
                           config=PLOT_CONFIG, validate=True)
        return Plot(name, markupsafe.Markup(html))  # plotly's own output: trusted, not escaped


# --------------------------------------------------------------------------- sections
def verdict_section(bs: Sequence[Block], runs: Sequence[TrackedRun], plot: _Plots,
                    colours: dict[str, str]) -> Section:
    """The first screen: per block, which sampler is best on the selection metric, which others cannot be
    told apart from it, and what each one cost in all."""
    s = Section("verdict", "Which sampler, at what cost",
                "Per dataset × backbone × protocol: the best sampler on the test value of the selection metric "
                "(the metric every search selected on, on validation), and which others are statistically "
                "indistinguishable from it (paired t-tests over test users against the best, per-user values "
                "averaged over seeds, Holm-adjusted for the number of comparisons). The chart puts each "
                "sampler's test value against its total compute: its search trials, its tested runs and a "
                "shared pre-training (ICPNS's first stage), as the sum of the runs' wall-clock minutes.")
    for b in bs:
        s.parts.append(Heading(b.title))
        found = block_verdict(b)
        missing = "" if found else ("one sampler only: nothing to compare" if len(b.samplers) < 2 else
                                    "no verdict: per-user test values are missing for all but one sampler")
        s.parts.append(VerdictPart(found, missing))
        costs = total_costs(b, runs)
        standing = {c.sampler: "untested" for c in costs}
        if found:
            standing.update({found.best: "best", **dict.fromkeys(found.tied, "tied"),
                             **dict.fromkeys(found.worse, "worse")})
        label = metric_label(selection_key(b))
        s.parts.append(Grid((plot(f"accuracy-cost/{b.slug}", F.accuracy_cost_figure(costs, colours, label, standing)),
                             BudgetTable(tuple(costs)))))
    if not bs:
        s.parts.append(Note("No tested runs in this experiment, so no verdict: it needs the final runs of a study "
                            "(`raysearch tune`) or runs of `raysearch train tracking.enabled=true`."))
    return s


def comparison_section(bs: Sequence[Block]) -> Section:
    s = Section("comparison", "Which sampler wins where",
                "Test metrics of the selected configurations: mean ± standard deviation over seeds "
                "(sample std; one run shows its value alone). ★ marks the best mean of each column within "
                "a dataset × backbone × protocol; ◆ marks the selection metric. Below a table: ICPNS and GDNS each against the best other "
                "sampler, paired over test users on the selection metric (per-user values averaged over "
                "seeds; two-sided paired t-test and Wilcoxon signed-rank test).")
    for b in bs:
        s.parts.append(Heading(b.title))
        table = comparison(b)
        s.parts.append(Table(table))
        tests = significance(b)
        if tests:
            s.parts.append(SignificanceTable(tuple(tests)))
        mixed = [r.sampler for r in table.rows if r.configurations > 1]
        if mixed:
            s.parts.append(Note(f"{', '.join(mixed)}: the runs averaged here differ in more than the seed "
                                "(several configurations of the same sampler)."))
    if not bs:
        s.parts.append(Note("No tested runs in this experiment: the table needs the final runs of a study "
                            "or runs of `raysearch train tracking.enabled=true`."))
    return s


def curves_section(bs: Sequence[Block], plot: _Plots, colours: dict[str, str]) -> Section:
    s = Section("curves", "Training curves",
                "The selection metric on validation after each epoch, one line per run; ICPNS's pre-training "
                "(random negatives) is dotted, its fine-tuning solid.")
    for b in bs:
        cs = curves(b)
        s.parts.append(Heading(b.title))
        if cs:
            s.parts.append(plot(f"curves/{b.slug}", F.curves_figure(cs, colours, b.valid_metric)))
        else:
            s.parts.append(Note("No validation history logged for these runs."))
    if not bs:
        s.parts.append(Note("No tested runs, so no training curves."))
    return s


def search_section(trials: Sequence[Trials], plot: _Plots, colours: dict[str, str]) -> Section:
    s = Section("search", "The search",
                "Search trials of each study (runs tagged raysearch.phase=search), each with the best "
                "validation value it reached (ASHA-stopped trials included).")
    if not trials:
        s.parts.append(Note("No search trials in this experiment (they come from `raysearch tune`)."))
        return s
    for study in sorted({t.study for t in trials}):
        mine = [t for t in trials if t.study == study]
        s.parts.append(Heading(f"study {study}"))
        overview = [plot(f"search-progress/{study}", F.progress_figure(mine, colours))]
        with_k = [t for t in mine if K_KEY in t.params and t.numeric(K_KEY)]
        with_alpha = [t for t in mine if ALPHA_KEY in t.params and t.numeric(ALPHA_KEY)]
        overview.append(plot(f"metric-vs-k/{study}",
                             F.metric_vs_figure(with_k, K_KEY, "the number of communities K", colours))
                        if with_k else Note("Metric vs K: no trial of this study varied sampler.n_communities."))
        overview.append(plot(f"metric-vs-alpha/{study}", F.metric_vs_figure(with_alpha, ALPHA_KEY, "alpha", colours))
                        if with_alpha else Note("Metric vs alpha: no trial of this study varied sampler.alpha."))
        gdns = [t for t in mine if t.sampler == "gdns" and {ALPHA_KEY, GROUP_KEY} <= set(t.params)
                and t.numeric(ALPHA_KEY)]
        overview += [plot(f"gdns-heatmap/{study}", F.heatmap_figure(t, GROUP_KEY, ALPHA_KEY)) for t in gdns]
        if not gdns:
            overview.append(Note("GDNS alpha × group size: no GDNS search in this study varied both."))
        s.parts.append(Grid(tuple(overview)))
        for t in mine:
            if t.unreported:
                s.parts.append(Note(f"{t.sampler}: {t.unreported} more trial(s) reported no validation value "
                                    "(failed before their first epoch) and are left out."))
            note = importance_note(t)
            importance = Note(note) if note else plot(f"importance/{study}/{t.sampler}",
                                                      F.importance_figure(t, param_importances(t)))
            parallel = (plot(f"parallel/{study}/{t.sampler}", F.parallel_figure(t)) if t.params and len(t.rows) >= 2
                        else Note(f"{t.sampler}: no parallel coordinates (no searched parameter varied, "
                                  "or fewer than 2 trials)."))
            s.parts.append(Grid((importance, parallel), layout="wide"))
    return s


def communities_section(bs: Sequence[Block], plot: _Plots) -> Section:
    s = Section("communities", "Communities",
                "ICPNS's user communities (k-means on the pre-trained user representations) of one run per "
                "block (the lowest seed: assignments differ between seeds), and what each community likes.")
    shown = False
    for b in bs:
        run = community_run(b)
        if run is None:
            continue
        shown = True
        summary = run.results["communities"]
        who = f"{run.sampler}, seed {run.seed}, {summary['n_communities']} communities"
        s.parts.append(Heading(b.title))
        s.parts.append(Grid((
            plot(f"community-sizes/{b.slug}", F.community_sizes_figure(summary, f"Community sizes ({who})")),
            plot(f"community-popularity/{b.slug}", F.community_popularity_figure(
                community_items(summary), "Top items of each community: in-community vs global popularity")))))
    if not shown:
        s.parts.append(Note("No run with communities in this experiment (they come from ICPNS runs)."))
    return s


def breakdowns_section(bs: Sequence[Block], plot: _Plots, colours: dict[str, str]) -> Section:
    s = Section("breakdowns", "Popularity bands and communities",
                "Where the test metrics come from: items split into head / mid / tail by train popularity "
                "(20 / 30 / 50 % of the items by default), and users by ICPNS community.")
    for b in bs:
        s.parts.append(Heading(b.title))
        k = band_k(b)
        if k is None:
            s.parts.append(Note("No popularity-band breakdown recorded (full-ranking runs record it)."))
        else:
            s.parts.append(plot(f"bands/{b.slug}", F.bands_figure(band_rows(b, k), k, colours)))
        run = community_run(b)
        by_community = run.results.get("test_by_community") if run is not None else None
        if by_community:
            metric = b.valid_metric
            overall = run.results.get("test", {}).get(metric, math.nan)
            s.parts.append(plot(f"community-metrics/{b.slug}", F.community_metrics_figure(
                by_community, run.results["communities"], metric, overall,
                f"Test {metric} by community ({run.sampler}, seed {run.seed})")))
        else:
            s.parts.append(Note("No per-community test metrics (recorded by ICPNS runs)."))
    if not bs:
        s.parts.append(Note("No tested runs, so no breakdowns."))
    return s


def cost_section(bs: Sequence[Block], plot: _Plots, colours: dict[str, str],
                 scale: Sequence[dict[str, Any]] | None) -> Section:
    s = Section("cost", "Cost",
                "What each sampler costs in its own stage: wall time per epoch, the share of the training "
                "step spent drawing negatives, and negatives drawn per second of sampling.")
    for b in bs:
        s.parts.append(Heading(b.title))
        s.parts.append(plot(f"cost/{b.slug}", F.cost_figure(cost_rows(b), colours)))
    if not bs:
        s.parts.append(Note("No tested runs, so no cost figures."))
    s.parts.append(Heading("Scale"))
    if scale:
        s.parts.append(plot("scale", F.scale_figure(scale)))
    else:
        s.parts.append(Note("No scale measurements given (write them with `raysearch bench scale --json FILE` "
                            "and pass `--scale FILE`)."))
    return s


# --------------------------------------------------------------------------- the page
def _full(value: float) -> str:
    """A float as the table's data attributes carry it (round-trips exactly; NaN as ``nan``)."""
    return "nan" if value is None or math.isnan(value) else repr(float(value))


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``: a compute total as a reader takes it in."""
    if seconds is None or math.isnan(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _environment():
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["full"] = _full
    env.filters["label"] = metric_label
    env.filters["fmt"] = lambda v, digits=4: "–" if v is None or math.isnan(v) else f"{v:.{digits}f}"
    env.filters["duration"] = _duration
    return env


def template_text(name: str = TEMPLATE) -> str:
    """A template of ``dashboards/`` (the package ``raysearch.dashboards``)."""
    return resources.files("raysearch.dashboards").joinpath(name).read_text(encoding="utf-8")


def render(runs: Sequence[TrackedRun], experiment: str, tracking_uri: str,
           scale: Sequence[dict[str, Any]] | None = None, now: Callable[[], dt.datetime] = dt.datetime.now) -> str:
    """The report's HTML for ``runs`` (all runs of ``experiment``)."""
    import markupsafe
    from plotly.offline import get_plotlyjs

    bs = blocks(runs)
    trials = search_trials(runs)
    colours = F.sampler_colours([r.sampler for r in runs])
    plot = _Plots()
    sections = [verdict_section(bs, runs, plot, colours), comparison_section(bs), curves_section(bs, plot, colours),
                search_section(trials, plot, colours), communities_section(bs, plot),
                breakdowns_section(bs, plot, colours), cost_section(bs, plot, colours, scale)]
    datasets = sorted({(r.dataset, r.tag("dataset_fingerprint")) for r in runs})
    facts = {
        "runs": len(runs), "tested": sum(r.tested for r in runs),
        "search": sum(r.phase == "search" for r in runs),
        "datasets": [f"{name} ({fp})" if fp else name for name, fp in datasets],
        "code_versions": sorted({r.tag("code_version") for r in runs if r.tag("code_version")}),
        "studies": sorted({r.study for r in runs if r.study}),
    }
    return _environment().from_string(template_text()).render(
        experiment=experiment, tracking_uri=tracking_uri, facts=facts, sections=sections,
        generated=now().strftime("%Y-%m-%d %H:%M"), version=code_version(),
        plotly_js=markupsafe.Markup(get_plotlyjs()), figure_count=plot.count)


def default_out(experiment: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in experiment)
    return Path(f"report-{safe}.html")


def build_report(experiment: str, out: str | Path | None = None, tracking_uri: str | None = None,
                 scale: str | Path | None = None, markdown: str | Path | None = None) -> Path:
    """What ``raysearch report`` does: read ``experiment`` from MLflow, write the HTML dashboard to
    ``out`` (default ``report-<experiment>.html``) atomically, return its path. ``markdown``: also
    write the tables as Markdown to this file."""
    from raysearch.report.runs import load_runs
    from raysearch.report.tables import read_scale
    from raysearch.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    scale_rows = read_scale(scale) if scale is not None else None
    runs = load_runs(uri, experiment)
    path = Path(out) if out is not None else default_out(experiment)
    _write_atomic(path, render(runs, experiment, uri, scale_rows))
    if markdown is not None:
        from raysearch.report.markdown import render_markdown

        _write_atomic(Path(markdown), render_markdown(runs, experiment))
    return path


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # atomic: no half-written report is left behind
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
