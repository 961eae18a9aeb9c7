"""Antialiased resize and the metrics' preprocessing: equal to torch and to the original's pixels."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asva_jax.eval.preprocess import CLIP_MEAN, CLIP_STD, preprocess_clip, preprocess_fid, preprocess_fvd
from asva_jax.media.resize import resize, resize_weights

DATA = Path(__file__).parent / "data" / "eval"
ATOL = 2e-6  # float32 rounding of values in [0, 1]


def to_last(x):
  return np.moveaxis(x, -3, -1)


@pytest.fixture(scope="module")
def preprocess():
  return dict(np.load(DATA / "preprocess" / "io.npz"))


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
@pytest.mark.parametrize("in_hw,out_hw", [((36, 44), (224, 224)), ((128, 256), (229, 229)),
                                          ((300, 17), (224, 5)), ((9, 9), (9, 4))])
def test_matches_torch_interpolate(method, in_hw, out_hw):
  x = np.random.default_rng(sum(in_hw)).random((2, 3) + in_hw, dtype=np.float32)
  expected = F.interpolate(torch.from_numpy(x), out_hw, mode=method, antialias=True).numpy()
  actual = np.moveaxis(np.asarray(resize(to_last(x), out_hw, method)), -1, -3)
  np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def test_bicubic_is_not_plain_bicubic():
  """The antialiased path (a = -0.5) differs from torch's plain bicubic (a = -0.75) even upsampling."""
  x = np.random.default_rng(0).random((1, 1, 10, 10), dtype=np.float32)
  plain = F.interpolate(torch.from_numpy(x), (23, 23), mode="bicubic").numpy()
  ours = np.moveaxis(np.asarray(resize(to_last(x), (23, 23))), -1, -3)
  assert np.abs(ours - plain).max() > 1e-3


def test_weights_rows_sum_to_one():
  for sizes in [(36, 224), (256, 229), (5, 5)]:
    np.testing.assert_allclose(resize_weights(*sizes).sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("case,size", [("up_36x44", 224), ("tgh_128x256", 224), ("tgh_128x256", 229)])
def test_fixture_resize(preprocess, case, size):
  frames = to_last(preprocess[f"{case}__frames"])
  expected = to_last(preprocess[f"{case}__resize{size}"])
  np.testing.assert_allclose(np.asarray(resize(frames, (size, size))), expected, rtol=0, atol=ATOL)


def test_metric_inputs(preprocess):
  frames = to_last(preprocess["tgh_128x256__frames"])  # (1, H, W, 3)
  r224, r229 = to_last(preprocess["tgh_128x256__resize224"]), to_last(preprocess["tgh_128x256__resize229"])
  np.testing.assert_allclose(np.asarray(preprocess_fid(frames)), r229 * 2 - 1, rtol=0, atol=2 * ATOL)
  video = np.stack([frames[0], frames[0][::-1]])[None]  # (1, T=2, H, W, 3)
  expected = np.stack([r224[0], np.asarray(resize(frames[0][::-1], (224, 224)))])[None] * 2 - 1
  fvd_in = np.asarray(preprocess_fvd(video))
  assert fvd_in.shape == (1, 2, 224, 224, 3)
  np.testing.assert_allclose(fvd_in, expected, rtol=0, atol=2 * ATOL)
  clip = np.asarray(preprocess_clip(frames))
  np.testing.assert_allclose(clip, (r224 - np.float32(CLIP_MEAN)) / np.float32(CLIP_STD), rtol=0, atol=1e-5)


def test_fid_input_of_inception_fixture():
  io = np.load(DATA / "inception_fid" / "io.npz")
  np.testing.assert_allclose(np.asarray(preprocess_fid(to_last(io["frames"]))), to_last(io["x"]),
                             rtol=0, atol=2 * ATOL)


def test_overshoot_is_kept():
  """A hard edge overshoots [0, 1]; nothing clamps (the original does not)."""
  x = np.zeros((1, 8, 8, 1), np.float32)
  x[:, :, 4:] = 1.0
  y = np.asarray(resize(x, (8, 29)))
  assert y.max() > 1.0 and y.min() < 0.0


def test_integer_pixels_are_refused():
  with pytest.raises(ValueError, match="divide by 255"):
    preprocess_fvd(np.zeros((1, 2, 8, 8, 3), np.uint8))
