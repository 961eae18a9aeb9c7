"""Fréchet distance on the original's hard cases, and FID / FVD as eval.py pools the features."""

import json
from pathlib import Path

import numpy as np
import pytest

from asva_jax.eval.frechet import (FeatureError, feature_stats, fid, frechet_distance, frechet_from_stats,
                                   fvd)

DATA = Path(__file__).parent / "data" / "eval" / "frechet"
CASES = sorted(set(json.loads((DATA / "cases.json").read_text())) - {"_versions"})


@pytest.fixture(scope="module")
def io():
  return dict(np.load(DATA / "io.npz"))


@pytest.mark.parametrize("case", CASES)
def test_original_value(io, case):
  x1, x2, expected = io[f"{case}__x1"], io[f"{case}__x2"], float(io[f"{case}__fd"])
  scale = np.trace(np.cov(x1, rowvar=False)) + np.trace(np.cov(x2, rowvar=False))
  actual = frechet_distance(x1, x2)
  assert isinstance(actual, float)
  # 1e-6 relative; `identical` is 0 up to rounding, so relative to the covariance scale there.
  assert abs(actual - expected) <= 1e-6 * max(abs(expected), 1e-6 * scale), (actual, expected)


def test_every_case_has_data(io):
  assert {"gauss", "rank_deficient", "near_singular", "identical"} <= set(CASES)
  assert {k.split("__")[0] for k in io} == set(CASES)


def test_symmetric_and_from_stats(io):
  x1, x2 = io["gauss__x1"], io["gauss__x2"]
  d = frechet_distance(x1, x2)
  assert frechet_distance(x2, x1) == pytest.approx(d, rel=1e-10)
  assert frechet_from_stats(*feature_stats(x1), *feature_stats(x2)) == d


def test_closed_form_diagonal():
  """Diagonal Gaussians: d² = ‖μ₁−μ₂‖² + Σ(σ₁ − σ₂)² (σ the standard deviations)."""
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  v1, v2 = np.array([1.0, 4.0, 0.0]), np.array([4.0, 1.0, 9.0])
  expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (0 - 3) ** 2
  assert frechet_from_stats(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_fid_drops_first_frame_and_fvd_uses_clips():
  rng = np.random.default_rng(0)
  gen, ref = rng.normal(size=(3, 4, 5)), rng.normal(size=(4, 4, 5))
  expected = frechet_distance(ref[:, 1:].reshape(-1, 5), gen[:, 1:].reshape(-1, 5))
  assert fid(gen, ref) == expected
  changed = gen.copy()
  changed[:, 0] += 100.0  # frame 0 is the conditioning image: it must not count
  assert fid(changed, ref) == expected
  assert fvd(gen[:, 0], ref[:, 0]) == frechet_distance(ref[:, 0], gen[:, 0])


def test_bad_shapes():
  with pytest.raises(FeatureError, match="same D"):
    frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
  with pytest.raises(FeatureError, match="at least 2"):
    frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))
  with pytest.raises(FeatureError, match="clips, frames, D"):
    fid(np.zeros((4, 3)), np.zeros((4, 3)))


def test_fid_fvd_of_the_original_metrics_run():
  """The features of the original's end-to-end run (metrics/ fixture) give its FID and FVD."""
  m = np.load(DATA / "metrics_features.npz")
  assert fid(m["fid_features_gen"], m["fid_features_gt"]) == pytest.approx(float(m["FID"]), rel=1e-6)
  assert fvd(m["fvd_features_gen"], m["fvd_features_gt"]) == pytest.approx(float(m["FVD"]), rel=1e-6)
