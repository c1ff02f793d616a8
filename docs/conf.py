"""Sphinx configuration for Async Nexus."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "Async Nexus"
author = "Async Nexus contributors"
copyright = "Async Nexus contributors"

from async_nexus import __version__ as release  # noqa: E402
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = False

templates_path: list[str] = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = "Async Nexus"

# Docstring examples run in the doctest build with the public names in scope.
doctest_global_setup = "from async_nexus import *"
