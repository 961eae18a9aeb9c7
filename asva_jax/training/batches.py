"""The trainer's side of the clip stream: config -> `data.stream.train_stream`, and a stream batch ->
the arrays the step takes."""

from __future__ import annotations

import numpy as np

from asva_jax.data.stream import train_stream

VAE_MOMENTS = ("vae_mean", "vae_logvar")


def make_loader(source, config, *, process_index: int, process_count: int, start_step: int = 0):
  return train_stream(source, seed=int(config.seed), global_batch=int(config.train.batch_size),
                      process_index=process_index, process_count=process_count, start_step=start_step,
                      worker_count=int(config.data.worker_count))


def host_batch(example_batch: dict, text_encodings, use_vae_moments: bool) -> dict:
  """A stream batch -> the numpy arrays the step takes (text encodings looked up per prompt)."""
  out = {"mel": np.asarray(example_batch["mel"], np.float32),
         "text": text_encodings.batch(example_batch["prompt"])}
  if use_vae_moments:
    out.update({k: np.asarray(example_batch[k]) for k in VAE_MOMENTS})
  else:
    out["video"] = np.asarray(example_batch["video"])
  return out
