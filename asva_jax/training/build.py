"""The models a run trains: from a converted checkpoint or from scratch, and which parameters train.

All three live in one `Trainee` module so that one NNX filter splits them into the
trainable tree and the frozen tree (docs/reference.md §6.4: `_temp`/`_audio` modules of the UNet).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.errors import AsvaError, ConfigError


class Trainee(nnx.Module):
  """unet + autoencoder (VAE or space-to-depth) + audio encoder, as one module tree."""

  def __init__(self, unet, autoencoder, audio_encoder):
    self.unet = unet
    self.autoencoder = autoencoder
    self.audio_encoder = audio_encoder


@dataclasses.dataclass
class Built:
  model: Trainee
  configs: dict          # component -> its config.json dict (for from-scratch workdirs)
  scaling_factor: float


def remat_option(name: str):
  """config.remat -> the UNet's `remat` argument (False, True or a checkpoint policy). "auto" builds
  without remat; the trainer then chooses what fits (`training.memory.choose_remat`, `set_remat`)."""
  if name in ("", "none", "auto"):
    return False
  if name == "full":
    return True
  policy = getattr(jax.checkpoint_policies, name, None)
  if policy is None or not callable(policy):
    raise ConfigError(f"--config.remat={name!r}: expected none, full, auto or a jax.checkpoint_policies "
                      f"name such as dots_with_no_batch_dims_saveable")
  return policy


def set_remat(model: Trainee, name: str) -> None:
  """Switches the UNet's blocks to remat `name` in place. The setting is a static attribute that the
  blocks read when traced, so the parameters stay as they are; only the graphdef changes."""
  option = remat_option(name)
  for _, module in nnx.iter_modules(model.unet):
    if hasattr(module, "remat"):
      module.remat = option


AUDIO_KEYS = ("auto", "gathered", "masked")


def audio_keys_option(form: str, audio_mask, backend: str | None = None) -> int | None:
  """config.model.audio_keys -> the UNet's `audio_keys` for the segment masks (F, T): "auto" is the
  sampler's choice for `backend` (`audio_keys_per_frame`), "gathered" the same count on any backend,
  "masked" None (the full masked attention)."""
  from asva_jax.models.unet_3d import audio_keys_per_frame
  check_audio_keys(form)
  if form == "masked":
    return None
  return audio_keys_per_frame(audio_mask, backend="cpu" if form == "gathered" else backend)


def check_audio_keys(form: str) -> None:
  if form not in AUDIO_KEYS:
    raise ConfigError(f"--config.model.audio_keys={form!r}: expected one of {', '.join(AUDIO_KEYS)}")


def trainable_filter(model_config):
  """NNX filter (path, value) -> bool of the parameters that train."""
  from asva_jax.models.unet_3d import trainable
  if model_config.trainable not in ("temp_audio", "all"):
    raise ConfigError(f"--config.model.trainable={model_config.trainable!r}: expected temp_audio or all")

  def select(path, value) -> bool:
    if not isinstance(value, nnx.Param):
      return False
    head = str(path[0])
    if head == "unet":
      return model_config.trainable == "all" or trainable(path[1:])
    return head == "audio_encoder" and bool(model_config.train_audio_encoder)
  return select


def check_checkpoint(folder: str) -> Path:
  path = Path(folder)
  needed = ("unet", "audio_encoder")
  missing = [n for n in needed if not (path / n / "config.json").is_file()]
  if missing:
    raise AsvaError(
        f"--config.model.checkpoint={folder}: no converted {', '.join(missing)} there. Make the folder "
        f"with python -m convert.from_pytorch --sd15 SD15_DIR --imagebind IMAGEBIND_CKPT --out {folder} "
        f"(or train from scratch with --config.model.checkpoint='' and model.unet/audio_encoder sizes)")
  return path


def _autoencoder(model_config, ckpt: str, compute, seed: int):
  from asva_jax.models.space_to_depth import SpaceToDepth
  from asva_jax.models.vae import AutoencoderKL, VAEConfig, load_vae
  kind = model_config.autoencoder
  if kind == "space_to_depth":
    return SpaceToDepth(int(model_config.space_to_depth_factor)), {}
  if kind != "vae":
    raise ConfigError(f"--config.model.autoencoder={kind!r}: expected vae or space_to_depth")
  if ckpt:
    if not (Path(ckpt) / "vae" / "config.json").is_file():
      raise AsvaError(f"--config.model.checkpoint={ckpt}: no vae/ folder (convert it with "
                      f"python -m convert.from_pytorch --sd15 ...), or use model.autoencoder=space_to_depth")
    return load_vae(ckpt, dtype=compute), {}
  cfg = VAEConfig(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                     for k, v in dict(model_config.vae).items()})
  return AutoencoderKL(cfg, dtype=compute, rngs=nnx.Rngs(seed + 1)), {"vae": cfg.to_diffusers()}


def build_models(config) -> Built:
  """The run's models in float32 master precision with the configured compute dtype and remat."""
  from asva_jax.models import imagebind_audio, unet_3d
  from asva_jax.models.unet_config import DEFAULT_CONFIG
  m = config.model
  compute = jnp.dtype(config.precision.compute)
  options = dict(dtype=compute, param_dtype=jnp.dtype(config.precision.params),
                 remat=remat_option(config.remat), attention=m.attention)
  ckpt = m.checkpoint
  if ckpt:
    check_checkpoint(ckpt)
    unet = unet_3d.load_unet(ckpt, **options)
    audio = imagebind_audio.load_audio_encoder(ckpt, dtype=compute, attention=m.attention)
    configs = {}
  else:
    if not m.unet or not m.audio_encoder:
      raise ConfigError("--config.model.checkpoint is empty, so the models train from scratch, but "
                        "config.model.unet / config.model.audio_encoder give no sizes")
    unet_config = {**DEFAULT_CONFIG, **{k: list(v) if isinstance(v, tuple) else v
                                        for k, v in dict(m.unet).items()}}
    unet = unet_3d.build_unet(unet_config, seed=config.seed, **options)
    audio = imagebind_audio.build_audio_encoder(dict(m.audio_encoder), seed=config.seed + 2,
                                                dtype=compute, attention=m.attention)
    configs = {"unet": unet_config, "audio_encoder": audio.config.to_dict()}
  autoencoder, ae_config = _autoencoder(m, ckpt, compute, config.seed)
  configs.update(ae_config)
  if m.autoencoder == "space_to_depth" and unet.config.in_channels != autoencoder.latent_channels:
    raise ConfigError(f"model.autoencoder=space_to_depth with factor {m.space_to_depth_factor} gives "
                      f"{autoencoder.latent_channels} latent channels, but the UNet takes "
                      f"{unet.config.in_channels} (set model.unet.in_channels/out_channels)")
  return Built(Trainee(unet, autoencoder, audio), configs, float(config.diffusion.scaling_factor))
