"""The code version recorded with every result: the package version plus the git commit when known."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from raysearch import __version__


@functools.cache
def code_version() -> str:
    """``0.1.0`` or ``0.1.0+g<sha>`` (``.dirty`` when the checkout has uncommitted changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}" if sha else __version__
