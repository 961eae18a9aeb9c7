"""media.resize without torch equals torch's antialiased resize (the original's, via torchvision).

Exact pixels wherever an output sample has at most 4 taps (downscales up to 2x, and any upscale):
the sampler's inputs near the model's size. At larger downscales PyTorch's compiled CPU kernel
rounds its longer sums in an order not reproduced here: one level on a few pixels in 10,000.
"""

import numpy as np
import pytest

from asva_jax.media.resize import aspect_crop_box, crop_and_resize, resize_weights

torch = pytest.importorskip("torch")
F = torch.nn.functional

# The documented bound beyond 2x downscales (README, "Installing, and what it weighs").
MAX_SHARE_OFF = 1e-3


def torch_crop_and_resize(frames, target, truncate=False):
  """Mirrors the original's torch resize: aspect crop, float in [0, 1], bilinear antialiased."""
  top, left, h, w = aspect_crop_box(frames.shape[1], frames.shape[2], target)
  x = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + h, left:left + w]))
  x = x.permute(0, 3, 1, 2).float() / 255.0
  if (h, w) != tuple(target):
    x = F.interpolate(x, size=tuple(target), mode="bilinear", align_corners=False, antialias=True)
  y = x.clamp(0.0, 1.0) * 255.0
  return (y if truncate else y.round()).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def frames_of(shape, seed):
  """Noise plus a smooth ramp: every level occurs, and so do runs of equal pixels."""
  rng = np.random.default_rng(seed)
  ramp = np.linspace(0, 255, shape[1] * shape[2]).reshape(1, shape[1], shape[2], 1)
  noise = rng.integers(0, 256, (shape[0], shape[1], shape[2], 3))
  return np.where(rng.random(noise.shape) < 0.5, noise, ramp).astype(np.uint8)


@pytest.mark.parametrize("truncate", [False, True])
@pytest.mark.parametrize("source,target", [
    ((40, 40), (32, 32)), ((48, 40), (32, 32)), ((40, 48), (32, 32)), ((16, 16), (32, 32)),
    ((240, 240), (128, 128)), ((64, 96), (32, 48)), ((100, 60), (37, 23)), ((33, 77), (50, 20)),
    ((32, 32), (32, 32))])
def test_equals_torch_exactly(source, target, truncate):
  frames = frames_of((2,) + source, seed=sum(source))
  np.testing.assert_array_equal(crop_and_resize(frames, target, truncate=truncate),
                                torch_crop_and_resize(frames, target, truncate))


@pytest.mark.parametrize("truncate", [False, True])
@pytest.mark.parametrize("source,target", [((640, 640), (256, 256)), ((720, 1280), (256, 256)),
                                           ((256, 256), (64, 64))])
def test_large_downscales_within_the_bound(source, target, truncate):
  frames = frames_of((1,) + source, seed=sum(source))
  ours = crop_and_resize(frames, target, truncate=truncate).astype(int)
  ref = torch_crop_and_resize(frames, target, truncate).astype(int)
  assert np.abs(ours - ref).max() <= 1
  assert np.mean(ours != ref) <= MAX_SHARE_OFF


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
@pytest.mark.parametrize("n,m", [(640, 256), (40, 32), (16, 32), (256, 229), (300, 224), (9, 4)])
def test_weights_are_torchs_bit_for_bit(method, n, m):
  """An impulse per input sample through torch gives its weight matrix exactly."""
  impulses = torch.eye(n).reshape(n, 1, 1, n)
  expected = F.interpolate(impulses, size=(1, m), mode=method, antialias=True, align_corners=False)
  np.testing.assert_array_equal(resize_weights(n, m, method), expected.reshape(n, m).T.numpy())
