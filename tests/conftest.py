"""Shared pytest configuration for the Async Nexus test suite."""
