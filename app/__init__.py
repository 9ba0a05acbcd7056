"""runctl-tui: a terminal dashboard for ML training runs."""

__version__ = "0.1.0"
