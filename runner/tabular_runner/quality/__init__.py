"""Scoring of synthetic data: fidelity (SDMetrics), privacy (Anonymeter, DCR), the gate.

Each module imports its heavy library lazily, inside the function that needs it, so
importing ``tabular_runner.quality.gate`` stays cheap.
"""
