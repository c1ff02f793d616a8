"""A target module whose import fails: the runner exits 2 and shows the traceback."""

from __future__ import annotations

raise ImportError("cannot import name 'settings' from the configuration (pretend)")
