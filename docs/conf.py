"""Sphinx configuration for Async Nexus."""

from __future__ import annotations

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "_ext"))

from async_nexus import __version__ as release  # noqa: E402

project = "Async Nexus"
author = "Async Nexus contributors"
copyright = "Async Nexus contributors"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "public_api",  # docs/_ext/public_api.py: the build fails if a public name is undocumented
]

autodoc_typehints = "both"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
# Optional dependencies that are not installed where the docs are built are mocked, so the
# modules that need them still render; installed ones are used for real.
autodoc_mock_imports = [
    name
    for name in ("redis", "zmq", "nats", "opentelemetry", "uvloop", "msgpack")
    if importlib.util.find_spec(name) is None
]
nitpicky = False

# No network in CI: intersphinx links resolve only from a cached inventory, if any.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

templates_path: list[str] = []
exclude_patterns = ["_build", "_ext", "examples", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = "Async Nexus"

# Docstring and page examples run in the doctest build with the public names in scope.
doctest_global_setup = """
import asyncio
from async_nexus import *
from async_nexus import errors
from async_nexus.codec import *
"""
