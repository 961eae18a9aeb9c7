"""Experiment configurations (ml_collections), read by `--config configs/NAME.py`."""
