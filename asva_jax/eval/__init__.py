"""Evaluation metrics of the paper, in JAX."""
