"""The built-in default: synthetic audio-visual clips through the whole AVSyncD forward pass on CPU.

    python -m asva_jax.demo --config configs/demo.py [--config.data.batch_size=4 ...]

Tiny random-weight models of the real architectures (no downloads); the models
of a converted checkpoint are used instead when `model.checkpoint` is set.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.workdir = "outputs/demo"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.num_classes = 3
  c.data.videos_per_class = 2
  c.data.source_size = (96, 128)   # synthetic videos, H x W
  c.data.size = (64, 64)           # frames in the shards, H x W (AVSync15: 256 x 256)
  c.data.batch_size = 2
  c.data.num_batches = 2

  c.model = ml_collections.ConfigDict()
  c.model.checkpoint = ""          # a converted checkpoint folder; empty = tiny random models
  c.model.unet = dict(block_out_channels=[32, 32, 64, 64], layers_per_block=1, norm_num_groups=8,
                      attention_head_dim=4, cross_attention_dim=32, audio_cross_attention_dim=32)
  c.model.vae = dict(block_out_channels=[16, 32, 32, 32], layers_per_block=1, norm_num_groups=8)
  c.model.audio_encoder = dict(embed_dim=32, num_blocks=2, num_heads=4, out_embed_dim=32)
  c.model.dtype = "float32"

  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.num_train_timesteps = 1000
  c.diffusion.scaling_factor = 0.18215
  c.diffusion.audio_drop_prob = 0.2
  return c
