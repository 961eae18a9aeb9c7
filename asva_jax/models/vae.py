"""The SD1.5 VAE (diffusers `AutoencoderKL`) in Flax NNX, channels-last.

Images are (B, H, W, 3) in [-1, 1], latents (B, H/8, W/8, 4). Video callers may
pass (B, F, H, W, C): frames are folded into the batch, the VAE has no temporal
part. The latent scaling factor (0.18215 for SD1.5) is *not* applied here;
callers multiply after `sample_latent` and divide before `decode`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax import component_folders
from asva_jax.constants import SD15_SCALING_FACTOR
from asva_jax.models.normalization import GroupNorm
from asva_jax.models.vae_blocks import DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D, conv2d

LOGVAR_RANGE = (-30.0, 20.0)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  """The fields of diffusers' `vae/config.json` that shape the network (SD1.5 values by default)."""

  in_channels: int = 3
  out_channels: int = 3
  block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
  layers_per_block: int = 2
  latent_channels: int = 4
  norm_num_groups: int = 32
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  mid_block_add_attention: bool = True
  scaling_factor: float = SD15_SCALING_FACTOR

  @classmethod
  def from_diffusers(cls, config: Mapping, source: str = "config") -> VAEConfig:
    """Reads a diffusers `AutoencoderKL` config; fields it lacks take the SD1.5 values.

    Raises ValueError (naming `source`) for block types or activations this port lacks.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in config.items() if k in names}
    if "block_out_channels" in kwargs:
      kwargs["block_out_channels"] = tuple(int(c) for c in kwargs["block_out_channels"])
    cfg = cls(**kwargs)
    n = len(cfg.block_out_channels)
    for field, block in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
      types = tuple(config.get(field, (block,) * n))
      if types != (block,) * n:
        raise ValueError(f"{source}: {field} {list(types)} unsupported (expected {n} x {block})")
    act = config.get("act_fn", "silu")
    if act not in ("silu", "swish"):
      raise ValueError(f"{source}: act_fn {act!r} unsupported (only silu)")
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
      raise ValueError(f"{source}: block_out_channels {cfg.block_out_channels} do not split into "
                       f"{cfg.norm_num_groups} groups")
    return cfg

  def to_diffusers(self) -> dict:
    """A complete diffusers config dict (for `AutoencoderKL.from_pretrained`)."""
    n = len(self.block_out_channels)
    out = dataclasses.asdict(self)
    out["block_out_channels"] = list(self.block_out_channels)
    out.update(_class_name="AutoencoderKL", act_fn="silu",
               down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n)
    return out


class Encoder(nnx.Module):
  def __init__(self, cfg: VAEConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    ch, groups = cfg.block_out_channels, cfg.norm_num_groups
    self.conv_in = conv2d(cfg.in_channels, ch[0], 3, **kw)
    self.down_blocks = nnx.List([
        DownEncoderBlock2D(ch[max(i - 1, 0)], ch[i], num_layers=cfg.layers_per_block, groups=groups,
                           add_downsample=i < len(ch) - 1, **kw)
        for i in range(len(ch))])
    self.mid_block = UNetMidBlock2D(ch[-1], groups=groups, add_attention=cfg.mid_block_add_attention, **kw)
    self.conv_norm_out = GroupNorm(groups, ch[-1], eps=1e-6, dtype=dtype, param_dtype=param_dtype)
    self.conv_out = conv2d(ch[-1], 2 * cfg.latent_channels, 3, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.conv_in(x)
    for block in self.down_blocks:
      x = block(x)
    x = self.mid_block(x)
    return self.conv_out(nnx.silu(self.conv_norm_out(x)))


class Decoder(nnx.Module):
  def __init__(self, cfg: VAEConfig, *, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    ch, groups = tuple(reversed(cfg.block_out_channels)), cfg.norm_num_groups
    self.conv_in = conv2d(cfg.latent_channels, ch[0], 3, **kw)
    self.up_blocks = nnx.List([
        UpDecoderBlock2D(ch[max(i - 1, 0)], ch[i], num_layers=cfg.layers_per_block + 1, groups=groups,
                         add_upsample=i < len(ch) - 1, **kw)
        for i in range(len(ch))])
    self.mid_block = UNetMidBlock2D(ch[0], groups=groups, add_attention=cfg.mid_block_add_attention, **kw)
    self.conv_norm_out = GroupNorm(groups, ch[-1], eps=1e-6, dtype=dtype, param_dtype=param_dtype)
    self.conv_out = conv2d(ch[-1], cfg.out_channels, 3, **kw)

  def __call__(self, z: jax.Array) -> jax.Array:
    x = self.mid_block(self.conv_in(z))
    for block in self.up_blocks:
      x = block(x)
    return self.conv_out(nnx.silu(self.conv_norm_out(x)))


def _fold_frames(x: jax.Array, name: str) -> tuple[jax.Array, tuple[int, ...]]:
  """(B, F, H, W, C) -> (B*F, H, W, C); returns the leading shape to restore."""
  if x.ndim == 4:
    return x, x.shape[:1]
  if x.ndim == 5:
    return x.reshape((-1,) + x.shape[2:]), x.shape[:2]
  raise ValueError(f"{name}: expected (B, H, W, C) or (B, F, H, W, C), got shape {x.shape}")


class AutoencoderKL(nnx.Module):
  """Image <-> diagonal-Gaussian latent; 2**(len(block_out_channels) - 1) spatial reduction."""

  def __init__(self, config: VAEConfig = VAEConfig(), *, dtype=None, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.config = config
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.encoder = Encoder(config, **kw)
    self.decoder = Decoder(config, **kw)
    c = config.latent_channels
    self.quant_conv = conv2d(2 * c, 2 * c, 1, **kw) if config.use_quant_conv else None
    self.post_quant_conv = conv2d(c, c, 1, **kw) if config.use_post_quant_conv else None

  def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """images (B[, F], H, W, C_in) -> posterior (mean, logvar), each (B[, F], h, w, latent_channels)."""
    x, lead = _fold_frames(images, "AutoencoderKL.encode")
    moments = self.encoder(x)
    if self.quant_conv is not None:
      moments = self.quant_conv(moments)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    logvar = jnp.clip(logvar, *LOGVAR_RANGE)
    return mean.reshape(lead + mean.shape[1:]), logvar.reshape(lead + logvar.shape[1:])

  def decode(self, latents: jax.Array) -> jax.Array:
    """Unscaled latents (B[, F], h, w, latent_channels) -> images (B[, F], H, W, C_out)."""
    z, lead = _fold_frames(latents, "AutoencoderKL.decode")
    if self.post_quant_conv is not None:
      z = self.post_quant_conv(z)
    x = self.decoder(z)
    return x.reshape(lead + x.shape[1:])

  def __call__(self, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """Reconstruction through the posterior mode, or a posterior sample when `key` is given."""
    mean, logvar = self.encode(images)
    return self.decode(mean if key is None else sample_latent(key, mean, logvar))


def sample_latent(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """A draw from N(mean, exp(logvar)); AVSyncD samples the posterior rather than taking its mean."""
  noise = jax.random.normal(key, mean.shape, jnp.float32)
  std = jnp.exp(0.5 * logvar.astype(jnp.float32))
  return (mean.astype(jnp.float32) + std * noise).astype(mean.dtype)


def load_vae(path, *, dtype=None, param_dtype=jnp.float32) -> AutoencoderKL:
  """Loads a converted VAE from a checkpoint root (`path/vae/`) or the `vae/` folder itself."""
  return component_folders.load_component(path, "vae", lambda config, source: AutoencoderKL(
      VAEConfig.from_diffusers(config, source=source), dtype=dtype, param_dtype=param_dtype,
      rngs=nnx.Rngs(0)))
