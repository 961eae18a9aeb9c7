"""AVSyncD on AVSync15 (docs/reference.md §6): the released recipe, 256 x 256, 37k steps.

    python -m asva_jax.train --config configs/avsyncd.py --workdir runs/avsync15 \
        --config.model.checkpoint=checkpoints/asva --config.data.dir=data/avsync15

`model.checkpoint` is the converted SD1.5 + ImageBind folder
(`python -m convert.from_pytorch --sd15 ... --imagebind ...`), `data.dir` the
shards (`python -m data_prep.build ...`).
"""

from asva_jax.training.defaults import base_config


def get_config():
  c = base_config()
  c.train.num_steps = 37_000
  c.train.milestones = (37_000,)
  c.remat = "auto"  # the fastest setting whose step fits the device (docs/training.md, "Remat")
  c.mesh.fsdp = 1
  return c
