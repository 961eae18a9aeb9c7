"""Fréchet distance between feature sets, and the FID / FVD of the original evaluation.

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)

As the original: means of the float32 features, unbiased float64 covariances.
The trace of (Σ₁Σ₂)^½ is taken as the sum of the square roots of the eigenvalues
of the symmetric positive semi-definite Σ₁^½ Σ₂ Σ₁^½ (same spectrum as Σ₁Σ₂),
which needs no jitter and never goes complex when the covariances are singular
(fewer clips than feature dimensions, the usual case for FVD); it agrees with the
original's `scipy.linalg.sqrtm` to ~1e-8 relative where that one is finite.
"""

from __future__ import annotations

import numpy as np

from asva_jax.errors import AsvaError


class FeatureError(AsvaError, ValueError):
  """Feature sets that a Fréchet distance cannot be computed from."""


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(sigma)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """Tr((Σ₁Σ₂)^½) for symmetric positive semi-definite Σ₁, Σ₂."""
  root = _psd_sqrt(sigma1)
  middle = root @ sigma2 @ root
  eig = np.linalg.eigvalsh((middle + middle.T) / 2)
  return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_from_stats(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet distance of two Gaussians given their means (D,) and covariances (D, D)."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise FeatureError(f"Fréchet distance: statistics of different sizes (means {mu1.shape} and "
                       f"{mu2.shape}, covariances {sigma1.shape} and {sigma2.shape})")
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
               - 2.0 * trace_sqrt_product(sigma1, sigma2))


def feature_stats(x) -> tuple[np.ndarray, np.ndarray]:
  """Mean (of the float32 features, as the original) and unbiased float64 covariance of (N, D)."""
  x = np.asarray(x, np.float32)
  if x.ndim != 2 or x.shape[0] < 2:
    raise FeatureError(f"Fréchet distance needs at least 2 feature vectors as (N, D), got {x.shape}")
  return x.mean(axis=0), np.cov(x.astype(np.float64), rowvar=False)


def frechet_distance(x1, x2) -> float:
  """Fréchet distance between two feature sets (N1, D) and (N2, D)."""
  x1, x2 = np.asarray(x1), np.asarray(x2)
  if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
    raise FeatureError(f"Fréchet distance: feature sets must be (N, D) with the same D, "
                       f"got {x1.shape} and {x2.shape}")
  return frechet_from_stats(*feature_stats(x1), *feature_stats(x2))


def fid(generated, reference) -> float:
  """FID of the original: Inception features (clips, frames, D), frame 0 (the given image) left out.

  Every other frame of every clip is one sample.
  """
  generated, reference = np.asarray(generated), np.asarray(reference)
  if generated.ndim != 3 or reference.ndim != 3:
    raise FeatureError(f"fid: expected per-frame features (clips, frames, D), got {generated.shape} "
                       f"and {reference.shape}")
  flat = lambda f: f[:, 1:].reshape(-1, f.shape[-1])
  return frechet_distance(flat(reference), flat(generated))


def fvd(generated, reference) -> float:
  """FVD of the original: one I3D feature vector per whole clip, (clips, D)."""
  return frechet_distance(reference, generated)
