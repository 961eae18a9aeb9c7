r"""The built-in demo: learn audio-synchronised motion from nothing on a plain CPU, and prove it.

    python -m asva_jax.demo --workdir outputs/demo     (or: make demo; --config defaults to this file)

Writes a synthetic audio-visual dataset (each class its own motion and sound, events at
random times) with train and test shards, trains a small AVSyncD from scratch (the real
architecture at small widths, predicting v; a small ImageBind-architecture audio encoder
frozen at its random initialisation; space-to-depth pixels instead of a VAE), then animates
every held-out clip with its own and with another clip's audio and writes the videos, a
side-by-side GIF, a plot and WORKDIR/sync_report.json (`asva_jax.demo.report`). Rerunning
resumes. See docs/demo.md.
"""

import ml_collections

from asva_jax.training.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.seed = 0

  s = c.data.synthetic
  s.enabled = True
  s.num_classes = 3
  s.videos_per_class = 48         # 40 train + 8 test per class
  s.test_fraction = 1 / 6
  s.source_size = (16, 16)        # rendered at the training size: nothing lost to resizing
  s.size = (16, 16)
  # Short videos with one or two well-separated events whose motion fades over 0.8 s: every
  # 2-s clip holds events, each event moves 4-5 frames at 6 fps with a sharp onset, and
  # events of two clips rarely coincide, so shuffled audio is a clear baseline.
  s.durations = (2.2, 2.2)
  s.num_events = (1, 2)
  s.min_gap = 0.8
  s.event_seconds = 0.8
  s.ball_radius = 0.3             # of the frame: a 10-pixel ball, so an event moves many pixels

  m = c.model
  m.checkpoint = ""
  m.autoencoder = "space_to_depth"  # exact, parameter-free; a VAE would need training first
  m.space_to_depth_factor = 4       # 16 x 16 x 3 frames -> 4 x 4 x 48 latents
  # One UNet level (audio cross-attention down, mid and up blocks), 64 wide: wider than the 48
  # latent channels, or the UNet cannot carry the noise through (at width 32 the ε-loss sticks
  # at ~(48 - 32) / 48).
  m.unet = dict(
      in_channels=48, out_channels=48, block_out_channels=[64], layers_per_block=1,
      norm_num_groups=8, attention_head_dim=4, cross_attention_dim=32, audio_cross_attention_dim=32,
      down_block_types=["FFSpatioAudioTempCrossAttnDownBlock3D"],
      mid_block_type="FFSpatioAudioTempCrossAttnUNetMidBlock3D",
      up_block_types=["FFSpatioAudioTempCrossAttnUpBlock3D"])
  m.audio_encoder = dict(embed_dim=32, num_blocks=2, num_heads=4, out_embed_dim=32)
  m.trainable = "all"
  # Frozen at its random initialisation: random features keep every mel patch distinct and
  # the UNet's audio attention learns to read them. Trained jointly, it does as well with
  # v-prediction (and collapsed with ε): docs/demo.md, "What mattered".
  m.train_audio_encoder = False

  c.diffusion.scaling_factor = 1.0  # pixels in [-1, 1] already have about unit scale
  # v, not ε: a small model's ε error δ becomes ~8δ in x̂0 at t = 900, and ε-trained demo
  # models sampled noise whatever the audio (docs/demo.md, "What mattered").
  c.diffusion.prediction_type = "v_prediction"

  t = c.train
  t.num_steps = 3000              # make demo: 11 min on 2 idle cores; at 1500 steps even DDPM samples stay grainy
  t.batch_size = 8
  t.learning_rate = 1e-3
  t.log_every = 10
  t.checkpoint_every = 200
  t.keep = 2
  t.milestones = ()
  t.async_checkpoints = False
  # EMA weights sample the report: at 3000 steps they follow the audio far better than the raw
  # weights (timing-error ratio 0.11 against 0.26 with 10 DDIM steps) at a little more noise (10.0
  # against 8.9/255 where the real clips are still); at 1500 steps they lagged (docs/demo.md, "Sample noise and
  # EMA weights").
  t.ema_decay = 0.999
  t.ema_warmup = True

  c.precision.compute = "float32"
  c.precision.params = "float32"
  c.precision.frozen = "float32"
  c.log.tensorboard = False

  c.demo = ml_collections.ConfigDict()
  # Ancestral DDPM, not DDIM: fresh noise at every step lets the model correct its own errors, so
  # the samples keep a third of the grain (3.7/255 where the real clips are still, against 10.0
  # with 10 DDIM steps or 9.9 with 50, at the same ratio; docs/demo.md, "The sampler").
  c.demo.scheduler = "ddpm"
  c.demo.num_inference_steps = 50
  c.demo.audio_guidance = 3.0
  c.demo.text_guidance = 1.0
  c.demo.seed = 0
  c.demo.batch_size = 8
  c.demo.gif_rows = 6
  c.demo.video_scale = 8            # mp4s and GIF shown 8x larger (nearest neighbour)
  return c
