"""A tiny AVSyncD (same architecture, a few thousand parameters wide) trained from scratch on CPU.

    python -m asva_jax.train --config configs/tiny.py --workdir /tmp/tiny

Without `--config.data.dir` it writes a few synthetic videos and their shards into
the workdir first. Global batch 8, so the same run divides over 1, 2 or 8 devices.
`--config configs/tiny.py:one_level` is smaller still: one UNet level (the audio
cross-attention down, mid and up blocks), which compiles in a third of the time.
"""

from asva_jax.training.defaults import base_config


ONE_LEVEL = dict(
    in_channels=48, out_channels=48, block_out_channels=[16], layers_per_block=1, norm_num_groups=8,
    attention_head_dim=2, cross_attention_dim=16, audio_cross_attention_dim=16,
    down_block_types=["FFSpatioAudioTempCrossAttnDownBlock3D"],
    mid_block_type="FFSpatioAudioTempCrossAttnUNetMidBlock3D",
    up_block_types=["FFSpatioAudioTempCrossAttnUpBlock3D"])


def get_config(variant: str | None = None):
  if variant not in (None, "", "one_level"):
    raise ValueError(f"configs/tiny.py: unknown variant {variant!r} (expected one_level)")
  c = base_config()
  c.seed = 0
  c.data.synthetic.enabled = True
  c.model.checkpoint = ""
  c.model.autoencoder = "space_to_depth"
  c.model.space_to_depth_factor = 4     # 32 x 32 frames -> 8 x 8 x 48 latents
  c.model.unet = dict(
      in_channels=48, out_channels=48, block_out_channels=[16, 32], layers_per_block=1,
      norm_num_groups=8, attention_head_dim=2, cross_attention_dim=16, audio_cross_attention_dim=16,
      down_block_types=["FFSpatioAudioTempCrossAttnDownBlock3D", "FFSpatioTempResDownBlock3D"],
      mid_block_type="FFSpatioAudioTempCrossAttnUNetMidBlock3D",
      up_block_types=["FFSpatioTempResUpBlock3D", "FFSpatioAudioTempCrossAttnUpBlock3D"])
  if variant == "one_level":
    c.model.unet = ONE_LEVEL
  c.model.audio_encoder = dict(embed_dim=16, num_blocks=1, num_heads=2, out_embed_dim=16)
  c.model.trainable = "all"
  c.model.train_audio_encoder = True
  c.diffusion.scaling_factor = 1.0
  c.train.num_steps = 20
  c.train.batch_size = 8
  c.train.learning_rate = 1e-3
  c.train.log_every = 1
  c.train.checkpoint_every = 10
  c.train.milestones = ()
  c.train.async_checkpoints = False
  c.precision.compute = "float32"
  c.precision.params = "float32"
  c.precision.frozen = "float32"
  return c
