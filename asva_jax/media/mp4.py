"""Writing mp4 files with PyAV: H.264 video and/or AAC audio, deterministic output.

Used by the sampler (`write_video`), the demo, the synthetic data generator and by tests that
need deliberately odd files (audio only, video only, very short).
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from asva_jax.constants import FPS, SAMPLE_RATE

VIDEO_CODEC = "libx264"  # PyAV's bundled FFmpeg has it; checked by `video_codec()`
AUDIO_CODEC = "aac"
_AAC_FRAME = 1024
# Single-threaded x264 without macroblock-tree rate control. With mbtree on (x264's default), x264's
# AVX-512 code gave different bytes for the same frames now and then, depending on what the process
# had run before (measured 2026-12-05 on an AVX-512 AMD EPYC: ~5 % of encodes differed when other
# numpy work ran between them; 0 of 300 with mbtree=0, as with aq-mode=0 or asm=AVX2, and 0 under
# valgrind, which has no AVX-512). `asm=AVX2` would break CPUs without AVX2 and non-x86 builds;
# mbtree=0 only costs a little compression at our high quality (crf 12).
X264_OPTIONS = {"threads": "1", "x264-params": "mbtree=0"}


def video_codec() -> str:
  """H.264 when the bundled FFmpeg can encode it, else MPEG-4 part 2."""
  return VIDEO_CODEC if VIDEO_CODEC in av.codecs_available else "mpeg4"


def write_mp4(path: str | os.PathLike, frames: np.ndarray | None, fps: int,
              audio: np.ndarray | None = None, sample_rate: int = 48000, crf: int = 12,
              audio_offset: float = 0.0) -> None:
  """Writes `frames` (T, H, W, 3) uint8 at `fps` and `audio` (channels, samples) float32.

  Either may be None (a file without that stream). `audio_offset` >= 0 s makes the
  audio start that much later than the video: `audio`'s first sample is presented at
  that time (rounded to whole samples; the AAC encoder's ~1024 priming samples then
  remain in the stream just before it), as in files whose streams start apart.
  The bytes depend only on the input (see `X264_OPTIONS`). Written to a temporary name, then
  renamed.
  """
  if frames is None and audio is None:
    raise ValueError(f"{path}: nothing to write (no frames and no audio)")
  if audio_offset < 0:
    raise ValueError(f"{path}: audio_offset must be >= 0, got {audio_offset}")
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp.mp4")
  try:
    with av.open(str(tmp), "w", options={"fflags": "+bitexact"}) as container:
      _mux(container, frames, fps, audio, sample_rate, crf, int(round(audio_offset * sample_rate)))
  except BaseException:
    tmp.unlink(missing_ok=True)  # a leftover "*.tmp.mp4" would look like a video to a folder listing
    raise
  os.replace(tmp, path)


def _mux(container, frames, fps, audio, sample_rate, crf, audio_delay) -> None:
  vstream = astream = None
  if frames is not None:
    frames = np.asarray(frames, np.uint8)
    vstream = container.add_stream(video_codec(), rate=fps)
    vstream.height, vstream.width = frames.shape[1:3]
    vstream.pix_fmt = "yuv420p"
    vstream.options = {"crf": str(crf), **X264_OPTIONS} if video_codec() == VIDEO_CODEC else {}
  if audio is not None:
    audio = np.atleast_2d(np.asarray(audio, np.float32))
    astream = container.add_stream(AUDIO_CODEC, rate=sample_rate)
    astream.layout = {1: "mono", 2: "stereo"}[audio.shape[0]]
  if vstream is not None:
    for i, image in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(image, format="rgb24")
      frame.pts = i
      container.mux(vstream.encode(frame))
    container.mux(vstream.encode())
  if astream is not None:
    for start in range(0, audio.shape[1], _AAC_FRAME):
      chunk = np.ascontiguousarray(audio[:, start:start + _AAC_FRAME])
      frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=astream.layout.name)
      frame.sample_rate = sample_rate
      frame.pts = audio_delay + start
      container.mux(astream.encode(frame))
    container.mux(astream.encode())


def write_video(path: str | os.PathLike, frames: np.ndarray, audio: np.ndarray | None,
                fps: int = FPS, sample_rate: int = SAMPLE_RATE) -> Path:
  """(T, H, W, 3) uint8 -> mp4 (atomically); `audio` mono float32 or None. Odd sizes are padded
  to even ones by edge repetition (yuv420p needs even sides)."""
  frames = np.asarray(frames, np.uint8)
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  if pad_h or pad_w:
    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
  write_mp4(path, frames, fps, None if audio is None else np.asarray(audio, np.float32)[None],
            sample_rate=sample_rate)
  return Path(path)
