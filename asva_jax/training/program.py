"""The training program: sharded state, frozen tree and jitted step, built in one place.

    program, state, frozen = build_program(model, config, mesh)
    state, metrics = program.step(state, frozen, batch)

The trainer (`asva_jax.training.trainer`), `benchmarks.train_step` and
`benchmarks.tpu_compile` all call `build_program`, so the step they time or
compile is the step that trains. A concrete model gives arrays placed on the mesh;
an abstract one (`abstract_models`, shapes only) gives ShapeDtypeStructs carrying
the same shardings, for ahead-of-time compilation on a topology without devices.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from asva_jax.constants import NUM_FRAMES
from asva_jax.errors import ConfigError
from asva_jax.parallel import sharding
from asva_jax.training import ema as ema_lib
from asva_jax.training.build import Trainee, audio_keys_option, build_models
from asva_jax.training.state import frozen_cast, make_optimizer
from asva_jax.training.step import jit_train_step, make_train_step

MEL_SHAPE = (128, 204)  # ImageBind's normalised log-mel per clip (asva_jax.audio.fbank)


@dataclasses.dataclass(frozen=True)
class TrainProgram:
  """What stays fixed over a run (the arrays are returned beside it, so that nothing here keeps a
  replaced state alive)."""
  mesh: Mesh
  graphdef: nnx.GraphDef
  optimizer: optax.GradientTransformation
  state_shardings: dict     # {"step", "params", "opt_state"[, "ema"]}
  frozen_shardings: Any
  step: Callable            # jitted train_step(state, frozen, batch) -> (state, metrics); state donated
  audio_keys: int | None = None  # audio tokens each frame attends to in the step (None: all, masked)

  @property
  def replicated(self):
    return sharding.replicated(self.mesh)


def with_shardings(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def is_abstract(tree) -> bool:
  return any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(tree))


def build_program(model: Trainee, config, mesh: Mesh) -> tuple[TrainProgram, dict, Any]:
  """(program, state at step 0, frozen tree): `model` split into trainable and frozen trees, both
  and AdamW's state placed on `mesh` per `config.mesh`, and the step jitted with those shardings.
  State = {"step", "params", "opt_state"}, and "ema" (a copy of the params, sharded like them)
  when `train.ema_decay` > 0; the frozen tree is in `precision.frozen`.

  The frozen tree is cast and placed leaf by leaf: at the peak the caller's model and the placed
  frozen tree exist, not also a whole unplaced cast copy (the recipe's float32 base is several GiB
  on device 0).
  """
  from asva_jax.schedulers.noise_schedule import scaled_linear_alphas_cumprod
  from asva_jax.training.build import trainable_filter
  graphdef, params, frozen = nnx.split(model, trainable_filter(config.model), ...)
  abstract = is_abstract(params)
  cast = frozen_cast(config)
  min_size = int(config.mesh.min_shard_size)
  optimizer = make_optimizer(config.train)
  param_sh = sharding.tree_shardings(params, mesh, shard=True, min_size=min_size)
  frozen_sh = sharding.tree_shardings(frozen, mesh, shard=bool(config.mesh.shard_frozen), min_size=min_size)
  opt_sh = sharding.tree_shardings(jax.eval_shape(optimizer.init, params), mesh, shard=True,
                                   min_size=min_size)
  replicated = sharding.replicated(mesh)
  state_sh = {"step": replicated, "params": param_sh, "opt_state": opt_sh}
  with_ema = ema_lib.has_ema(config.train)
  if with_ema:
    state_sh["ema"] = param_sh
  if abstract:
    state = with_shardings({"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params,
                            "opt_state": jax.eval_shape(optimizer.init, params)}
                           | ({"ema": params} if with_ema else {}), state_sh)
    frozen = with_shardings(jax.tree.map(cast, frozen), frozen_sh)
  else:
    params = jax.device_put(params, param_sh)
    frozen = jax.tree.map(lambda x, s: jax.device_put(cast(x), s), frozen, frozen_sh)
    state = {"step": jax.device_put(jnp.zeros((), jnp.int32), replicated), "params": params,
             "opt_state": jax.jit(optimizer.init, out_shardings=opt_sh)(params)}
    if with_ema:
      state["ema"] = jax.device_put(ema_lib.copy_tree(params), param_sh)
  d = config.diffusion
  alphas = jnp.asarray(scaled_linear_alphas_cumprod(int(d.num_train_timesteps), float(d.beta_start),
                                                    float(d.beta_end)))
  audio_mask = jnp.asarray(model.audio_encoder.segment_masks())
  backend = mesh.devices.flat[0].platform  # the step's platform (a TPU topology compiled from a CPU host)
  step = jit_train_step(make_train_step(graphdef, optimizer, config, alphas, audio_mask, backend),
                        state_sh, frozen_sh, None, replicated)
  keys = audio_keys_option(str(config.model.get("audio_keys", "auto")), audio_mask, backend)
  return TrainProgram(mesh, graphdef, optimizer, state_sh, frozen_sh, step, keys), state, frozen


def abstract_models(config) -> Trainee:
  """The run's models as shapes only (nothing allocated): sizes from config.model.unet / vae /
  audio_encoder, and SD1.5's UNet and VAE and ImageBind-Huge's audio encoder (what a converted
  checkpoint holds) for the fields left empty."""
  from asva_jax.models.imagebind_audio import ImageBindAudioConfig
  from asva_jax.models.unet_config import DEFAULT_CONFIG
  c = copy.deepcopy(config)
  c.model.checkpoint = ""
  c.model.unet = {**DEFAULT_CONFIG, **dict(config.model.unet)}
  c.model.audio_encoder = dict(config.model.audio_encoder) or ImageBindAudioConfig().to_dict()
  return nnx.eval_shape(lambda: build_models(c).model)


def batch_shapes(model: Trainee, batch: int, frame_size: tuple[int, int], *,
                 latents: bool) -> dict[str, jax.ShapeDtypeStruct]:
  """The global batch the step takes: frames (VAE or space-to-depth inside the step) or, with
  `latents`, the cached VAE moments of `data_prep.build --vae-latents` (float16, as stored)."""
  h, w = frame_size
  shapes = {"mel": jax.ShapeDtypeStruct((batch, *MEL_SHAPE), jnp.float32),
            "text": jax.ShapeDtypeStruct((batch, 77, model.unet.config.cross_attention_dim), jnp.float32)}
  if not latents:
    shapes["video"] = jax.ShapeDtypeStruct((batch, NUM_FRAMES, h, w, 3), jnp.uint8)
    return shapes
  vae_config = getattr(model.autoencoder, "config", None)
  if vae_config is None:
    raise ConfigError(f"--latents: cached VAE latents need config.model.autoencoder=vae, not "
                      f"{type(model.autoencoder).__name__}")
  factor = 2 ** (len(vae_config.block_out_channels) - 1)
  if h % factor or w % factor:
    raise ConfigError(f"--latents: frames of {h} x {w} do not divide by the VAE's factor {factor}")
  moments = jax.ShapeDtypeStruct((batch, NUM_FRAMES, h // factor, w // factor, vae_config.latent_channels),
                                 jnp.float16)
  return {**shapes, "vae_mean": moments, "vae_logvar": moments}


def abstract_batch(shapes: dict, mesh: Mesh) -> dict:
  """`batch_shapes` with the batch's sharding (split over data and fsdp), for ahead-of-time lowering."""
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding.batch_sharding(mesh, len(v.shape)))
          for k, v in shapes.items()}
