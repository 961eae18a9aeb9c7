"""Weight conversion between the original PyTorch checkpoints and asva-jax (run as `python -m convert.<tool>`)."""
