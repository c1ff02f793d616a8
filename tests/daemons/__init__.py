"""Programs the runner subprocess tests run: python -m async_nexus run tests.daemons.orders:backlog."""
