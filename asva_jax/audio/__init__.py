"""Audio frontend: decoding and resampling files, and ImageBind's log-mel input.

The log-mel functions (which need jax) are imported on first use (PEP 562): decoding a
file does not need them, and command-line tools start faster without them.
"""

import importlib

from asva_jax.audio.io import (AudioDecodeError, audio_duration, audio_start_time, load_audio,
                               load_audio_track)
from asva_jax.audio.resample import resample
from asva_jax.audio.segments import segment_masks

__all__ = ["AudioDecodeError", "audio_duration", "audio_start_time", "load_audio", "load_audio_track",
           "resample", "segment_masks", "waveform_to_mel", "waveform_to_mel_jax"]


def __getattr__(name):
  if name in ("waveform_to_mel", "waveform_to_mel_jax"):
    return getattr(importlib.import_module("asva_jax.audio.fbank"), name)
  raise AttributeError(f"module 'asva_jax.audio' has no attribute {name!r}")
