"""Training AVSyncD: configs, sharded state, the jitted step, checkpoints, logging and the loop.

Entry points: `asva_jax.training.trainer.train(config, workdir)` and `python -m asva_jax.train`.
"""
