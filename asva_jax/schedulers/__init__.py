"""Noise schedules and sampler steps (pure functions)."""
