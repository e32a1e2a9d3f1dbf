"""MLPerf-style scenario runner for text-to-image models (LoadGen side)."""

__version__ = "0.1.0"
