"""Packaging: every package directory is listed in pyproject.toml, and conf/ and dashboards/ ship."""

import importlib.resources
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_listed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {"raysearch." + ".".join(p.parent.relative_to(ROOT / "raysearch").parts)
               for p in (ROOT / "raysearch").rglob("__init__.py") if p.parent != ROOT / "raysearch"}
    on_disk |= {"raysearch", "raysearch.conf", "raysearch.dashboards"}
    assert listed == on_disk
    assert setuptools["package-dir"]["raysearch.conf"] == "conf"
    assert setuptools["package-dir"]["raysearch.dashboards"] == "dashboards"


def test_conf_and_dashboards_are_readable_as_package_data():
    conf = importlib.resources.files("raysearch.conf")
    assert (conf / "trainer" / "default.yaml").is_file()
    assert (conf / "search" / "icpns.yaml").is_file()
    dashboards = importlib.resources.files("raysearch.dashboards")
    assert any(p.name.endswith(".j2") for p in dashboards.iterdir())
