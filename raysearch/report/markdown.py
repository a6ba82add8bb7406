"""The report's tables as Markdown (``raysearch report --markdown FILE``): what a results page quotes.

Per dataset x backbone x protocol block: the comparison table (mean ± sample std over the tested runs,
best mean in bold) with each sampler's configuration, the paired significance tests of ICPNS and GDNS
against the best other sampler, and the popularity-band breakdown (per-band test recall and, for full
ranking, the share of top-K slots per band). Built from the same functions as the HTML report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from raysearch.config import load_group, short_names
from raysearch.errors import ConfigError
from raysearch.evaluation.significance import describe_verdict
from raysearch.report.runs import TrackedRun
from raysearch.report.tables import (
    BANDS,
    Block,
    band_k,
    band_rows,
    block_verdict,
    blocks,
    comparison,
    metric_label,
    significance,
)

SHOWN_PARAMS = ("trainer.lr", "trainer.reg", "trainer.optimizer")  # besides every sampler.* parameter


def _num(value: float, digits: int = 4) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _param(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() and "e" not in value.lower() else f"{number:.3g}"


def _sampler_defaults(name: str) -> dict[str, str]:
    try:
        return {f"sampler.{k}": str(v) for k, v in load_group("sampler", name).items()}
    except ConfigError:  # a sampler without a config file: show all of its parameters
        return {}


def configuration(runs: Sequence[TrackedRun]) -> str:
    """What a sampler's runs were trained with: learning rate, L2, optimiser and the ``sampler.*`` keys
    that differ from the sampler's defaults (``conf/sampler/<name>.yaml``), as ``key=value`` text; a key
    whose value differs between the runs shows ``(varies)``."""
    defaults = _sampler_defaults(runs[0].sampler) if runs else {}
    keys = sorted({k for r in runs for k in r.params if k in SHOWN_PARAMS or
                   (k.startswith("sampler.") and k != "sampler.name" and not k.startswith("sampler.pretrained"))},
                  key=lambda k: (k.startswith("trainer."), k))
    shown = {}
    for key in keys:
        values = {r.params.get(key) for r in runs}
        if (values <= {"None", None} and defaults.get(key, "None") == "None") or (
                key in defaults and values == {defaults[key]}):
            continue
        shown[key] = _param(next(iter(values))) if len(values) == 1 else "(varies)"
    names = short_names(list(shown))
    parts = [f"{names[key]}={value}" for key, value in shown.items()]
    return ", ".join(parts)


def block_markdown(block: Block) -> list[str]:
    table = comparison(block)
    lines = [f"### {block.title}", "", f"Selection on validation {block.valid_metric}; test evaluated once per run.", ""]
    found = block_verdict(block)
    if found is not None:
        lines += [f"Verdict: {describe_verdict(found.to_dict(), best='**{}**')}.", ""]
    header = ["sampler", "runs", *(metric_label(k) for k in table.metrics), "configuration"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = []
        for key in table.metrics:
            cell = row.cells[key]
            text = _num(cell.mean) + (f" ± {_num(cell.std)}" if cell.n > 1 else "")
            cells.append(f"**{text}**" if cell.best else text)
        lines.append("| " + " | ".join([row.sampler, str(row.runs), *cells,
                                          configuration(block.runs_of(row.sampler))]) + " |")
    tests = significance(block)
    if tests:
        lines += ["", "Paired over test users (per-user values averaged over seeds), two-sided:", ""]
        lines += ["| sampler | against (best other) | metric | users | difference | 95% CI | paired t p | Wilcoxon p |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in tests:
            lines.append(f"| {t.b} | {t.a} | {metric_label(t.metric)} | {t.n_users} | {t.diff:+.4f} "
                         f"({100 * t.relative:+.1f}%) | {t.ci95[0]:+.4f} to {t.ci95[1]:+.4f} | {t.p_t:.3g} | "
                         f"{t.p_wilcoxon:.3g} |")
    k = band_k(block)
    if k is not None:
        rows = band_rows(block, k)
        kinds = [kind for kind in ("recall", "share") if any(r["kind"] == kind for r in rows)]
        header = ["sampler", *(f"{kind}@{k} {band}" for kind in kinds for band in BANDS)]
        lines += ["", f"Popularity bands (items by train popularity: head / mid / tail); recall@{k} of the held-out "
                      "items of each band" + (f", share of the top-{k} slots per band" if "share" in kinds else "")
                      + ":", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for sampler in block.samplers:
            cells = []
            for kind in kinds:
                for band in BANDS:
                    values = [r["value"] for r in rows if r["sampler"] == sampler and r["kind"] == kind
                              and r["band"] == band and not math.isnan(r["value"])]
                    cells.append(_num(float(np.mean(values))) if values else "–")
            lines.append("| " + " | ".join([sampler, *cells]) + " |")
    return lines


def render_markdown(runs: Sequence[TrackedRun], experiment: str) -> str:
    """The Markdown tables of ``experiment``'s tested runs, one section per block."""
    bs = blocks(runs)
    lines = [f"## {experiment}", ""]
    if not bs:
        lines.append("No tested runs in this experiment.")
    for b in bs:
        lines += [*block_markdown(b), ""]
    return "\n".join(lines).rstrip() + "\n"
