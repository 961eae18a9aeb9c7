"""A parameter-free pixel "autoencoder": space-to-depth, for models trained from nothing.

A random-weight VAE gives meaningless latents, and training one costs more than
the small demo model it would serve. Folding each `factor × factor` pixel patch
into channels keeps every pixel (decode inverts encode exactly) while shrinking
the grid the video UNet works on, as a VAE would. It has the VAE's interface:
`encode` returns a posterior (mean, logvar) whose variance is zero, so
`sample_latent` returns the mean exactly, and `decode` maps latents back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class SpaceToDepth(nnx.Module):
  """images (..., H, W, C) in [-1, 1] <-> latents (..., H/f, W/f, C·f²)."""

  def __init__(self, factor: int = 4, channels: int = 3):
    self.factor = factor
    self.channels = channels

  @property
  def latent_channels(self) -> int:
    return self.channels * self.factor ** 2

  def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    *lead, h, w, c = images.shape
    f = self.factor
    if h % f or w % f or c != self.channels:
      raise ValueError(f"SpaceToDepth(factor={f}, channels={self.channels}): cannot fold images of "
                       f"shape {images.shape}")
    x = images.reshape(*lead, h // f, f, w // f, f, c)
    x = jnp.moveaxis(x, -4, -3).reshape(*lead, h // f, w // f, f * f * c)
    return x, jnp.full_like(x, -jnp.inf)

  def decode(self, latents: jax.Array) -> jax.Array:
    *lead, h, w, d = latents.shape
    f, c = self.factor, self.channels
    if d != self.latent_channels:
      raise ValueError(f"SpaceToDepth(factor={f}, channels={c}): latents have {d} channels, "
                       f"expected {self.latent_channels}")
    x = latents.reshape(*lead, h, w, f, f, c)
    return jnp.moveaxis(x, -3, -4).reshape(*lead, h * f, w * f, c)
