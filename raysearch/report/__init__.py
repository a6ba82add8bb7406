"""``raysearch report``: a self-contained HTML dashboard built from the runs tracked in MLflow.

``runs`` reads an experiment into plain records, ``tables`` and ``search`` turn them into the tables each
section shows, ``figures`` plots them with plotly, ``page`` assembles the page from the template in
``dashboards/``.
"""

from raysearch.report.page import build_report, render
from raysearch.report.runs import TrackedRun, load_runs

__all__ = ["TrackedRun", "build_report", "load_runs", "render"]
