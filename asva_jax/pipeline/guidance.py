"""Classifier-free guidance over text and audio (spec §7.3), all branches in one UNet batch.

A branch is used only when its scale is > 1, as in the original; so which branches
run is decided from the scales' values (host side), while the scales themselves
enter the compiled loop as traced numbers.

  mode    batch order of (text, audio) conditions       combined ε
  dual    [(∅, ∅), (T, ∅), (T, A)]                      e∅∅ + s_t(e_T∅ − e∅∅) + s_a(e_TA − e_T∅)
  text    [(∅, A), (T, A)]                              e∅A + s_t(e_TA − e∅A)
  audio   [(T, ∅), (T, A)]                              e_T∅ + s_a(e_TA − e_T∅)
  none    [(T, A)]                                      e_TA
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from asva_jax.errors import AsvaError

BRANCHES = {
    "dual": (("null", "null"), ("cond", "null"), ("cond", "cond")),
    "text": (("null", "cond"), ("cond", "cond")),
    "audio": (("cond", "null"), ("cond", "cond")),
    "none": (("cond", "cond"),),
}


class GuidanceError(AsvaError, ValueError):
  """Guidance scales that are not plain numbers, or conditions whose shapes do not fit."""


def guidance_mode(audio_guidance, text_guidance) -> str:
  try:
    s_a, s_t = float(audio_guidance), float(text_guidance)
  except (TypeError, jax.errors.ConcretizationTypeError) as e:
    raise GuidanceError("audio_guidance and text_guidance must be concrete numbers: whether a "
                        "guidance branch runs depends on its scale being > 1") from e
  return {(True, True): "dual", (False, True): "text", (True, False): "audio",
          (False, False): "none"}[(s_a > 1, s_t > 1)]


def _expand(x: jax.Array, batch: int, frames: int | None, name: str) -> jax.Array:
  """(B|1, N, D) or (B|1, F, N, D) -> batch `batch`; per-frame when `frames` is given."""
  x = jnp.asarray(x)
  if x.ndim not in (3, 4) or x.shape[0] not in (1, batch):
    raise GuidanceError(f"{name}: expected ({batch} or 1, [F,] N, D), got shape {x.shape}")
  if frames is not None and x.ndim == 3:
    x = jnp.broadcast_to(x[:, None], (x.shape[0], frames) + x.shape[1:])
  return jnp.broadcast_to(x, (batch,) + x.shape[1:])


def _expand_mask(m: jax.Array, batch: int, frames: int, tokens: int, name: str) -> jax.Array:
  m = jnp.asarray(m, bool)
  if m.ndim == 2:
    m = m[None]
  if m.ndim != 3 or m.shape[0] not in (1, batch) or m.shape[1:] != (frames, tokens):
    raise GuidanceError(f"{name}: expected ({batch} or 1, {frames}, {tokens}) or ({frames}, {tokens}) "
                        f"boolean, got shape {m.shape}")
  return jnp.broadcast_to(m, (batch, frames, tokens))


def batch_conditions(mode: str, batch: int, frames: int, *, text, audio, audio_mask, null_text,
                     null_audio, null_audio_mask) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(text, audio, mask) for every branch of `mode`, concatenated along the batch."""
  per_frame_text = jnp.ndim(text) == 4 or jnp.ndim(null_text) == 4
  per_frame_audio = jnp.ndim(audio) == 4 or jnp.ndim(null_audio) == 4
  texts = {"cond": _expand(text, batch, frames if per_frame_text else None, "text"),
           "null": _expand(null_text, batch, frames if per_frame_text else None, "null_text")}
  audios = {"cond": _expand(audio, batch, frames if per_frame_audio else None, "audio"),
            "null": _expand(null_audio, batch, frames if per_frame_audio else None, "null_audio")}
  tokens = audios["cond"].shape[-2]
  masks = {"cond": _expand_mask(audio_mask, batch, frames, tokens, "audio_mask"),
           "null": _expand_mask(null_audio_mask, batch, frames, tokens, "null_audio_mask")}
  branches = BRANCHES[mode]
  return (jnp.concatenate([texts[t] for t, _ in branches]),
          jnp.concatenate([audios[a] for _, a in branches]),
          jnp.concatenate([masks[a] for _, a in branches]))


def combine(mode: str, eps: jax.Array, audio_guidance, text_guidance) -> jax.Array:
  """The guided ε from the UNet output of all branches (batch-concatenated in `mode`'s order)."""
  parts = jnp.split(eps, len(BRANCHES[mode]))
  if mode == "dual":
    uncond, text_only, full = parts
    return uncond + text_guidance * (text_only - uncond) + audio_guidance * (full - text_only)
  if mode == "text":
    no_text, full = parts
    return no_text + text_guidance * (full - no_text)
  if mode == "audio":
    no_audio, full = parts
    return no_audio + audio_guidance * (full - no_audio)
  return parts[0]
