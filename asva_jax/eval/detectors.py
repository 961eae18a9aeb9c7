"""The evaluation networks together, and the per-clip features every metric is computed from.

Clips come as `video` (B, F, H, W, 3) float in [0, 1] at the generation size and `mel`
(B, 128, 204) normalised log-mel. Each network gets its own input as the original
prepares it (antialiased bicubic resizes, `asva_jax.eval.preprocess`):

  FID      Inception pool features of every frame          (B, F, D)   229 px, x*2-1
  FVD      I3D features of the whole clip                  (B, 400)    224 px, x*2-1
  AVSync   classifier score s(mel, clip)                    (B,)        224 px, CLIP-normalised
  IA / IT  ImageBind cosine similarity of each frame with the clip's audio / its category text
                                                            (B, F)      224 px, CLIP-normalised

Every network runs jitted, in float32 with full-precision matmuls and convolutions (the
metrics are compared with the original's to ~1e-5).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from asva_jax.eval.preprocess import preprocess_clip, preprocess_fid, preprocess_fvd


def _highest(fn):
  """Trace `fn` with float32 matmul precision (no TF32 / bf16 passes on GPUs)."""
  @functools.wraps(fn)
  def wrapped(*args):
    with jax.default_matmul_precision("float32"):
      return fn(*args)
  return wrapped


def _frames(video: jax.Array) -> jax.Array:
  return video.reshape((-1,) + video.shape[2:])


@nnx.jit
@_highest
def fid_features(inception, video):
  b, f = video.shape[:2]
  return inception(preprocess_fid(_frames(video))).reshape(b, f, -1)


@nnx.jit
@_highest
def fvd_features(i3d, video):
  return i3d(preprocess_fvd(video))


@nnx.jit
@_highest
def avsync_scores(classifier, video, mel):
  return classifier(mel, preprocess_clip(video))


@nnx.jit
@_highest
def image_embeddings(imagebind, video):
  b, f = video.shape[:2]
  return imagebind.encode_image(preprocess_clip(_frames(video))).reshape(b, f, -1)


@nnx.jit
@_highest
def audio_embeddings(imagebind, mel):
  return imagebind.encode_audio(mel)


@nnx.jit
@_highest
def text_embeddings(imagebind, ids):
  return imagebind.encode_text(ids)


@dataclasses.dataclass
class Detectors:
  """The loaded networks; a metric's network may be None when that metric is not asked for."""

  inception: nnx.Module | None = None
  i3d: nnx.Module | None = None
  imagebind: nnx.Module | None = None
  avsync: nnx.Module | None = None

  def text_embeddings(self, categories: list[str]) -> dict[str, np.ndarray]:
    """Category string -> ImageBind text embedding (unit vector), each computed once."""
    unique = sorted(set(categories))
    emb = np.asarray(text_embeddings(self.imagebind, jnp.asarray(self.imagebind.tokenize(unique))))
    return dict(zip(unique, emb))

  def features(self, video, mel, *, first_frame_only: bool = False, text_emb=None) -> dict[str, np.ndarray]:
    """Per-clip features of a batch: `fid`, `fvd`, `avsync`, `ia` (B, F) or, with
    `first_frame_only` (reference clips: AlignSync needs only their frame 0), `ia` (B, 1);
    `it` (B, F) when `text_emb` (B, E) is given."""
    video = jnp.asarray(video, jnp.float32)
    mel = jnp.asarray(mel, jnp.float32)
    out = {}
    if self.inception is not None:
      out["fid"] = fid_features(self.inception, video)
    if self.i3d is not None:
      out["fvd"] = fvd_features(self.i3d, video)
    if self.avsync is not None:
      out["avsync"] = avsync_scores(self.avsync, video, mel)
    if self.imagebind is not None:
      images = image_embeddings(self.imagebind, video[:, :1] if first_frame_only else video)
      out["ia"] = jnp.einsum("bfe,be->bf", images, audio_embeddings(self.imagebind, mel),
                             precision=jax.lax.Precision.HIGHEST)
      if text_emb is not None:
        out["it"] = jnp.einsum("bfe,be->bf", images, jnp.asarray(text_emb, jnp.float32),
                               precision=jax.lax.Precision.HIGHEST)
    return {k: np.asarray(v) for k, v in out.items()}
