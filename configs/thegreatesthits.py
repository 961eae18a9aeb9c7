"""AVSyncD on TheGreatestHits (docs/reference.md §6.5): 128 x 256 frames (latents 16 x 32), milestone at 16k steps.

    python -m asva_jax.train --config configs/thegreatesthits.py --workdir runs/tgh \
        --config.model.checkpoint=checkpoints/asva --config.data.dir=data/thegreatesthits

The frame size comes from the shards (build them with `--size 128x256`).
"""

from asva_jax.training.defaults import base_config


def get_config():
  c = base_config()
  c.train.num_steps = 16_000
  c.train.milestones = (16_000,)
  c.remat = "auto"  # the fastest setting whose step fits the device (docs/training.md, "Remat")
  return c
