"""Bundled data files (read with importlib.resources); see ATTRIBUTION.md for sources and licence."""
