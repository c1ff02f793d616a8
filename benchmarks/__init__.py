"""The benchmark suite of Async Nexus: ``python -m benchmarks`` (``--quick`` for a smoke run).

Every implementation does the same work in a subprocess of its own (see ``child.py``), so
one peer's leftovers never slow the next, and async-nexus 1.0.2 can run from a venv of its own.
"""
