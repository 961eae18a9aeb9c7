"""Per-frame VAE posterior moments for `data_prep.build --vae-latents CKPT`.

Stored for every frame and for its mirror image, so training can sample the
latent (`mean + exp(logvar / 2) * noise`, docs/reference.md §1.1 step 2) of either flip
without running the VAE encoder.

Input mapping: the original's dataset returns float frames in [0, 1] and the
training step maps them with `(x - 0.5) / 0.5` before the encoder (docs/reference.md §1.1
step 2). Here the frames are the *stored* ones (uint8, decoded from their
JPEG/PNG bytes exactly as the loader decodes them), mapped with
`vae_input`: `x = u / 255` (the loader's `to_unit_interval`), then
`(x - 0.5) / 0.5`, in float32. The moments therefore match what encoding the
loader's pixel clips would give. Differences from the original: its frames are
never rounded to uint8 (|error| <= 0.5/255 in [0, 1], i.e. <= 1/255 after the
mapping, plus the JPEG error when frames are stored as JPEG), and it runs the
VAE in float16 where this runs it in float32 (by default) and stores float16.
"""

from __future__ import annotations

import numpy as np

from asva_jax.data.features import LATENT_CHANNELS


def vae_input(frames: np.ndarray) -> np.ndarray:
  """uint8 frames -> float32 in [-1, 1], the original's `(x - 0.5) / 0.5` of `x = u / 255`."""
  x = frames.astype(np.float32) / np.float32(255.0)
  return (x - np.float32(0.5)) / np.float32(0.5)


def downsampling_factor(vae_config) -> int:
  return 2 ** (len(vae_config.block_out_channels) - 1)


def check_frame_size(vae_config, size: tuple[int, int], source: str) -> tuple[int, int, int]:
  """The latent shape (h, w, c) of `size` frames; ValueError naming `source` when they do not fit."""
  factor = downsampling_factor(vae_config)
  if size[0] % factor or size[1] % factor:
    raise ValueError(f"{source}: frame size {size[0]}x{size[1]} is not a multiple of the VAE's "
                     f"downsampling factor {factor}")
  if vae_config.latent_channels != LATENT_CHANNELS:
    raise ValueError(f"{source}: the VAE has {vae_config.latent_channels} latent channels; the shard "
                     f"schema stores {LATENT_CHANNELS}")
  return size[0] // factor, size[1] // factor, vae_config.latent_channels


class VaeMoments:
  """Callable: (T, H, W, 3) uint8 frames -> {vae_mean, vae_logvar, *_flipped}, (T, H/8, W/8, 4) float16.

  The module is split into its graph and its weights and the weights are passed
  to the compiled encoder as arguments: a jitted closure over the module would
  bake every weight into the program as a constant (335 MB for SD1.5's VAE).
  Frames go through in fixed-size batches (the last one padded) so the encoder
  compiles once per frame size.
  """

  def __init__(self, ckpt: str, batch: int = 16, dtype=None):
    import jax
    from flax import nnx

    from asva_jax.models.vae import load_vae
    vae = load_vae(ckpt, dtype=dtype)
    self.config = vae.config
    self.source = str(ckpt)
    self.batch = batch
    graphdef, self._state = nnx.split(vae)

    def encode(state, images):
      mean, logvar = nnx.merge(graphdef, state).encode(images)
      return mean.astype(np.float32), logvar.astype(np.float32)

    self._encode = jax.jit(encode)

  def latent_shape(self, size: tuple[int, int]) -> tuple[int, int, int]:
    return check_frame_size(self.config, size, self.source)

  def moments(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 -> posterior (mean, logvar), each (T, h, w, c) float32."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"VaeMoments: expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    self.latent_shape(frames.shape[1:3])
    means, logvars = [], []
    for i in range(0, len(frames), self.batch):
      chunk = frames[i:i + self.batch]
      pad = self.batch - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
      mean, logvar = self._encode(self._state, vae_input(chunk))
      means.append(np.asarray(mean)[:self.batch - pad])
      logvars.append(np.asarray(logvar)[:self.batch - pad])
    return np.concatenate(means), np.concatenate(logvars)

  def __call__(self, frames: np.ndarray) -> dict[str, np.ndarray]:
    mean, logvar = self.moments(frames)
    mean_f, logvar_f = self.moments(np.ascontiguousarray(frames[:, :, ::-1]))
    f16 = lambda a: a.astype(np.float16)  # noqa: E731
    return {"vae_mean": f16(mean), "vae_logvar": f16(logvar),
            "vae_mean_flipped": f16(mean_f), "vae_logvar_flipped": f16(logvar_f)}
