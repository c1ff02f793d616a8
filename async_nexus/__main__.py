"""``python -m async_nexus run package.module:factory``: see :mod:`async_nexus.runner`."""

from .runner import main

if __name__ == "__main__":
    raise SystemExit(main())
