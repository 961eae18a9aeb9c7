"""Audio frontend: decoding and resampling files, and ImageBind's log-mel input.

The names below are imported on first use (PEP 562): decoding a file needs neither jax
nor the log-mel code, and command-line tools start faster without them.
"""

import importlib

_WHERE = {
    "waveform_to_mel": "fbank", "waveform_to_mel_jax": "fbank",
    "AudioDecodeError": "io", "audio_duration": "io", "audio_start_time": "io", "load_audio": "io",
    "load_audio_track": "io",
    "resample": "resample",
    "segment_masks": "segments",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
  if name not in _WHERE:
    raise AttributeError(f"module 'asva_jax.audio' has no attribute {name!r}")
  return getattr(importlib.import_module(f"asva_jax.audio.{_WHERE[name]}"), name)
