"""Down, mid and up blocks of the video UNet (spec §2.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.resnet import Downsample3D, ResnetBlock3D, Upsample3D
from asva_jax.models.transformer_3d import Transformer3D


def apply(module: nnx.Module, *args, remat=False):
  """Calls `module(*args)`, rematerialised in the backward pass when `remat`.

  `remat` is True (save nothing, re-run the block) or a `jax.checkpoint_policies`
  policy. The block runs as a pure function of its split state under
  `jax.checkpoint` rather than through `nnx.remat`: nothing is written back, so it
  works inside any transform, also a plain `jax.grad` over a merged module (where
  `nnx.remat` fails with "Cannot mutate Param from a different trace level").
  """
  if not remat:
    return module(*args)
  graphdef, state = nnx.split(module)
  policy = None if remat is True else remat
  return jax.checkpoint(lambda s, *a: nnx.merge(graphdef, s)(*a), policy=policy)(state, *args)


class _Common:
  """Constructor arguments shared by every block."""

  def __init__(self, *, temb_channels, groups, eps, heads, cross_attention_dim,
               audio_cross_attention_dim, implementation, dtype, param_dtype, rngs):
    self.resnet_kw = dict(temb_channels=temb_channels, groups=groups, eps=eps, dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.attn_kw = dict(heads=heads, norm_num_groups=groups, cross_attention_dim=cross_attention_dim,
                        audio_cross_attention_dim=audio_cross_attention_dim,
                        implementation=implementation, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv_kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class DownBlock3D(nnx.Module):
  """`num_layers` x (resnet [-> transformer]), then an optional downsampler; every output is a skip."""

  def __init__(self, in_channels: int, out_channels: int, *, num_layers: int, with_attention: bool,
               add_downsample: bool, remat: bool = False, **common):
    c = _Common(**common)
    self.resnets = nnx.List([ResnetBlock3D(in_channels if j == 0 else out_channels, out_channels,
                                           **c.resnet_kw) for j in range(num_layers)])
    self.attentions = (nnx.List([Transformer3D(out_channels, **c.attn_kw) for _ in range(num_layers)])
                       if with_attention else None)
    self.downsamplers = nnx.List([Downsample3D(out_channels, **c.conv_kw)]) if add_downsample else None
    self.remat = remat

  def __call__(self, x, temb, text, audio, audio_mask):
    skips = []
    for j, resnet in enumerate(self.resnets):
      x = apply(resnet, x, temb, remat=self.remat)
      if self.attentions is not None:
        x = apply(self.attentions[j], x, text, audio, audio_mask, remat=self.remat)
      skips.append(x)
    if self.downsamplers is not None:
      x = self.downsamplers[0](x)
      skips.append(x)
    return x, skips


class MidBlock3D(nnx.Module):
  """resnet -> transformer -> resnet."""

  def __init__(self, channels: int, *, remat: bool = False, **common):
    c = _Common(**common)
    self.resnets = nnx.List([ResnetBlock3D(channels, channels, **c.resnet_kw) for _ in range(2)])
    self.attentions = nnx.List([Transformer3D(channels, **c.attn_kw)])
    self.remat = remat

  def __call__(self, x, temb, text, audio, audio_mask):
    x = apply(self.resnets[0], x, temb, remat=self.remat)
    x = apply(self.attentions[0], x, text, audio, audio_mask, remat=self.remat)
    return apply(self.resnets[1], x, temb, remat=self.remat)


class UpBlock3D(nnx.Module):
  """`num_layers` x (concat[running, skip] -> resnet [-> transformer]), then an optional upsampler."""

  def __init__(self, in_channels: int, prev_output_channels: int, out_channels: int, *,
               num_layers: int, with_attention: bool, add_upsample: bool, remat: bool = False,
               **common):
    c = _Common(**common)
    resnets = []
    for j in range(num_layers):
      skip = in_channels if j == num_layers - 1 else out_channels
      running = prev_output_channels if j == 0 else out_channels
      resnets.append(ResnetBlock3D(running + skip, out_channels, **c.resnet_kw))
    self.resnets = nnx.List(resnets)
    self.attentions = (nnx.List([Transformer3D(out_channels, **c.attn_kw) for _ in range(num_layers)])
                       if with_attention else None)
    self.upsamplers = nnx.List([Upsample3D(out_channels, **c.conv_kw)]) if add_upsample else None
    self.remat = remat

  def __call__(self, x, skips, temb, text, audio, audio_mask):
    """`skips` are consumed last-in-first-out; returns the output and the remaining skips."""
    for j, resnet in enumerate(self.resnets):
      x = jnp.concatenate([x, skips[-1]], axis=-1)
      skips = skips[:-1]
      x = apply(resnet, x, temb, remat=self.remat)
      if self.attentions is not None:
        x = apply(self.attentions[j], x, text, audio, audio_mask, remat=self.remat)
    if self.upsamplers is not None:
      x = self.upsamplers[0](x)
    return x, skips
