"""Dashboard definitions that ship with raysearch: the `raysearch report` page template
(``report.html.j2``) and the Grafana dashboard for the metrics exported through Ray
(``grafana-raysearch.json``). Installed as the package ``raysearch.dashboards``."""
