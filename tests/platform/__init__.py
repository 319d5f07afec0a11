"""The local test platform: control plane, node agent, services and the pytest plugin.

See docs/testing.md.
"""
