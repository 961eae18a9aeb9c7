"""Audio frontend: decoding and resampling files, and ImageBind's log-mel input."""

from asva_jax.audio.fbank import waveform_to_mel, waveform_to_mel_jax
from asva_jax.audio.io import (AudioDecodeError, audio_duration, audio_start_time, load_audio,
                               load_audio_track)
from asva_jax.audio.resample import resample
from asva_jax.audio.segments import segment_masks

__all__ = ["AudioDecodeError", "audio_duration", "audio_start_time", "load_audio", "load_audio_track",
           "resample",
           "segment_masks", "waveform_to_mel", "waveform_to_mel_jax"]
