"""The fields every training config has, with the AVSync15 recipe's values (docs/reference.md §6).

`configs/*.py` start from `base_config()` and change what differs.
"""

from __future__ import annotations

import ml_collections

# AVSyncD trains 12 frames per clip; the audio masks assume it (docs/reference.md §10.8).
from asva_jax.constants import NUM_FRAMES  # noqa: F401  (re-exported)
from asva_jax.run_spec import RECIPE_DIFFUSION


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 123

  c.data = ml_collections.ConfigDict()
  c.data.dir = ""                 # shards from data_prep.build; empty: synthetic (tiny config only)
  c.data.name = ""                # dataset name under data.dir (when it holds several)
  c.data.split = "train"
  c.data.worker_count = 0         # grain worker processes decoding clips
  c.data.use_vae_latents = True   # use cached VAE moments when the shards carry them
  c.data.synthetic = ml_collections.ConfigDict(dict(
      enabled=False, num_classes=3, videos_per_class=4, source_size=(48, 64), size=(32, 32)))

  c.model = ml_collections.ConfigDict()
  c.model.checkpoint = ""         # converted SD1.5 + ImageBind folder; empty = from scratch
  c.model.unet = {}               # from scratch: UNet config.json fields
  c.model.audio_encoder = {}      # from scratch: ImageBindAudioConfig fields
  c.model.vae = {}                # from scratch with autoencoder="vae": VAEConfig fields
  c.model.autoencoder = "vae"     # "vae" | "space_to_depth"
  c.model.space_to_depth_factor = 4
  c.model.trainable = "temp_audio"  # "temp_audio" (the recipe: _temp/_audio modules) | "all"
  c.model.train_audio_encoder = False
  c.model.attention = "auto"      # "auto" | "xla" | "cudnn" | "reference"
  # The UNet's audio cross-attention in the train step: "gathered" (each frame attends to its own 25
  # visible ImageBind tokens only, gathered before the projections), "masked" (all 229, masked), or
  # "auto" (the faster on the step's backend: gathered on CPU). The same softmax either way.
  c.model.audio_keys = "auto"

  # num_train_timesteps, beta_start, beta_end, scaling_factor, prediction_type ("epsilon" or
  # "v_prediction", asva_jax.schedulers.noise_schedule): the recipe's, as the run spec records it
  c.diffusion = ml_collections.ConfigDict(dict(RECIPE_DIFFUSION))
  c.diffusion.audio_drop_prob = 0.2

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 37_000
  c.train.batch_size = 64         # global clips per optimizer step
  c.train.grad_accum = 1          # micro-batches per step (scan); batch_size must divide
  c.train.learning_rate = 1e-4
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.eps = 1e-8
  c.train.weight_decay = 1e-2
  c.train.clip_norm = 1.0
  # An exponential moving average of the trainable parameters (0 = off), updated every step and
  # saved in every checkpoint; sampling and export use it when the run has one
  # (docs/training.md, "EMA weights"). With ema_warmup the decay at update n is
  # min(ema_decay, (1 + n) / (10 + n)), so early averages are not dominated by the initial weights.
  c.train.ema_decay = 0.0
  c.train.ema_warmup = False
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.keep = 3                # rolling checkpoints kept (milestones are kept besides)
  c.train.milestones = (37_000,)
  c.train.async_checkpoints = True

  c.precision = ml_collections.ConfigDict()
  c.precision.compute = "bfloat16"  # activations / matmuls
  c.precision.params = "float32"    # master weights of the trainable set and optimizer state
  c.precision.frozen = "bfloat16"   # storage of the frozen base (UNet, VAE, ImageBind)

  # "none" | "full" (re-run every resnet/transformer) | a jax.checkpoint_policies name
  # applied per block, e.g. "dots_with_no_batch_dims_saveable" | "auto": the first of none, the
  # policies of training/memory.py and full whose compiled step fits the device. "auto" costs an
  # extra full compilation per setting tried where none does not fit, so it is not the default.
  c.remat = "none"

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1                # -1: all devices not used by fsdp
  c.mesh.fsdp = 1
  c.mesh.shard_frozen = False     # also shard the frozen base over fsdp (else replicated)
  c.mesh.min_shard_size = 2 ** 14  # smaller tensors stay replicated

  # XLA's backend (LLVM) optimisation level for the step; -1 = XLA's default. 0 halves the
  # compile time of small models on CPU (tests, quick experiments) at some run-time cost.
  c.xla_backend_optimization_level = -1

  c.log = ml_collections.ConfigDict()
  c.log.tensorboard = True
  c.log.wandb = False
  c.log.wandb_project = "asva-jax"
  c.log.progress = True
  return c
