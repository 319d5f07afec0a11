"""aumos-tabular-engine runner: the synthesis pipeline and its command line."""

__version__ = "0.1.0"
