"""AVSyncD on Landscapes (docs/reference.md §6.5): 256 x 256, milestone at 24k steps.

    python -m asva_jax.train --config configs/landscapes.py --workdir runs/landscapes \
        --config.model.checkpoint=checkpoints/asva --config.data.dir=data/landscapes
"""

from asva_jax.training.defaults import base_config


def get_config():
  c = base_config()
  c.train.num_steps = 24_000
  c.train.milestones = (24_000,)
  c.remat = "auto"  # the fastest setting whose step fits the device (docs/training.md, "Remat")
  return c
