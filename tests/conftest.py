"""Shared fixtures. The platform plugin starts real local servers on demand (docs/testing.md)."""

pytest_plugins = ["tests.platform.plugin"]
