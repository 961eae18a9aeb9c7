"""Synthetic audio-visual videos with known, synchronised events, in the AVSync15 layout.

    python -m data_prep.synthetic --out DIR --num-classes K --videos-per-class N --seed S

Each class has one visible behaviour (a ball that jumps, flashes or deforms)
and one sound (a tone burst at a class pitch, or a click). Every event starts
on a video frame time `k / fps`; the sound starts at the same instant, so the
first changed frame and the audio onset coincide exactly. Events decay over
~0.2 s, so a frame sampled at 6 fps sees them.

Written: `DIR/videos/<class>/<class>_NNN.mp4` (H.264 + AAC stereo, left and
right at different gains so a downmix is testable), `DIR/train.txt`,
`DIR/test.txt`, `DIR/class_mapping.json` and the ground truth
`DIR/events.json`. The same seed gives the same files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from absl import app, flags
from tqdm import tqdm

from asva_jax.commands import runner
from asva_jax.storage import write_json_atomic, write_text_atomic
from data_prep.mp4 import video_codec, write_mp4

BEHAVIOURS = ("jumping", "flashing", "squashing")
SOUNDS = ("tone", "click")
COLOURS = (("red", (220, 40, 40)), ("green", (40, 190, 60)), ("blue", (50, 80, 230)),
           ("yellow", (230, 210, 40)), ("purple", (150, 60, 200)), ("orange", (240, 140, 30)))
RIGHT_GAIN = 0.5  # right channel = 0.5 x left: a correct downmix gives 0.75 x left
EVENT_SECONDS = 0.2
BALL_RADIUS = 1 / 6  # of the shorter side


@dataclasses.dataclass(frozen=True)
class ClassSpec:
  index: int
  behaviour: str
  sound: str
  colour: str
  rgb: tuple[int, int, int]
  pitch_hz: float

  @property
  def folder(self) -> str:
    return f"{self.colour}_ball_{self.behaviour}_{self.sound}_{self.index:02d}"

  @property
  def prompt(self) -> str:
    sound = f"a {self.pitch_hz:.0f} hz tone" if self.sound == "tone" else "clicks"
    return f"{self.colour} ball {self.behaviour} with {sound}"


def class_spec(index: int) -> ClassSpec:
  colour, rgb = COLOURS[index % len(COLOURS)]
  return ClassSpec(index=index, behaviour=BEHAVIOURS[index % 3], sound=SOUNDS[(index + index // 3) % 2],
                   colour=colour, rgb=rgb, pitch_hz=330.0 * 2 ** ((index % 12) / 6))


@dataclasses.dataclass(frozen=True)
class Clip:
  frames: np.ndarray      # (T, H, W, 3) uint8
  audio: np.ndarray       # (2, samples) float32
  events: tuple[float, ...]  # onset times in seconds, each k / fps
  duration: float


def sample_events(rng: np.random.Generator, num_frames: int, fps: int, num_events: tuple[int, int] = (2, 5),
                  min_gap: float = 0.5) -> list[int]:
  """`num_events` (inclusive range) onset frame indices, at least `min_gap` s apart, away from the
  clip edges (fewer when they do not fit)."""
  lo, hi = int(0.25 * fps), num_frames - int(0.35 * fps)
  gap = int(np.ceil(min_gap * fps))
  wanted = int(rng.integers(num_events[0], num_events[1] + 1))
  chosen: list[int] = []
  for candidate in rng.permutation(np.arange(lo, hi)):
    if all(abs(int(candidate) - c) >= gap for c in chosen):
      chosen.append(int(candidate))
    if len(chosen) == wanted:
      break
  return sorted(chosen)


def event_envelope(num_frames: int, event_frames: list[int], fps: int,
                   event_seconds: float = EVENT_SECONDS) -> np.ndarray:
  """Per-frame strength in [0, 1]: 1 at an onset frame, falling linearly over `event_seconds`."""
  length = max(2, int(round(event_seconds * fps)))
  env = np.zeros(num_frames, np.float32)
  for k in event_frames:
    span = np.arange(k, min(num_frames, k + length))
    env[span] = np.maximum(env[span], 1.0 - (span - k) / length)
  return env


def render_frames(spec: ClassSpec, env: np.ndarray, height: int, width: int,
                  centre: tuple[float, float], ball_radius: float = BALL_RADIUS) -> np.ndarray:
  """The ball over a gradient background, displaced/brightened/deformed by `env`."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  background = np.stack([40 + 60 * x / width, 50 + 50 * y / height,
                         np.full_like(x, 90.0)], axis=-1)
  radius = min(height, width) * ball_radius
  frames = np.empty((len(env), height, width, 3), np.uint8)
  colour = np.asarray(spec.rgb, np.float32)
  for t, e in enumerate(env):
    cy, cx = centre
    ry = rx = radius
    rgb = colour
    if spec.behaviour == "jumping":
      cy -= 0.25 * height * e
    elif spec.behaviour == "flashing":
      rgb = colour + (255.0 - colour) * e
    else:
      rx, ry = radius * (1 + 0.6 * e), radius * (1 - 0.5 * e)
    dist = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    alpha = np.clip((1.0 - dist) * min(rx, ry) + 0.5, 0.0, 1.0)[..., None]
    frames[t] = np.round(background * (1 - alpha) + rgb * alpha).astype(np.uint8)
  return frames


def render_audio(spec: ClassSpec, event_times: list[float], duration: float, sample_rate: int,
                 rng: np.random.Generator) -> np.ndarray:
  """Stereo (2, samples): quiet noise plus one decaying burst starting at each event time."""
  n = int(round(duration * sample_rate))
  mono = 0.003 * rng.standard_normal(n).astype(np.float32)
  burst_len = int(0.12 * sample_rate)
  t = np.arange(burst_len) / sample_rate
  if spec.sound == "tone":
    burst = 0.5 * np.sin(2 * np.pi * spec.pitch_hz * t) * np.exp(-t / 0.04)
  else:
    burst = 0.8 * np.sin(2 * np.pi * 2500.0 * t) * np.exp(-t / 0.006)
  for onset in event_times:
    start = int(round(onset * sample_rate))
    end = min(n, start + burst_len)
    mono[start:end] += burst[:end - start].astype(np.float32)
  return np.stack([mono, RIGHT_GAIN * mono]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Timing:
  """When things happen: video lengths (s), events per video (inclusive range), their minimum
  spacing (s) and how long each visible event lasts (s)."""
  durations: tuple[float, float] = (3.0, 6.0)
  num_events: tuple[int, int] = (2, 5)
  min_gap: float = 0.5
  event_seconds: float = EVENT_SECONDS


def make_clip(seed: int, class_index: int, video_index: int, *, height: int = 96, width: int = 128,
              fps: int = 25, sample_rate: int = 48000, timing: Timing = Timing(),
              ball_radius: float = BALL_RADIUS) -> Clip:
  """The frames, audio and event times of one synthetic video (pure function of its arguments)."""
  rng = np.random.default_rng([seed, class_index, video_index])
  spec = class_spec(class_index)
  num_frames = int(rng.integers(round(timing.durations[0] * fps), round(timing.durations[1] * fps) + 1))
  duration = num_frames / fps
  event_frames = sample_events(rng, num_frames, fps, tuple(timing.num_events), timing.min_gap)
  centre = (height * rng.uniform(0.45, 0.6), width * rng.uniform(0.35, 0.65))
  env = event_envelope(num_frames, event_frames, fps, timing.event_seconds)
  frames = render_frames(spec, env, height, width, centre, ball_radius)
  events = [k / fps for k in event_frames]
  audio = render_audio(spec, events, duration, sample_rate, rng)
  return Clip(frames=frames, audio=audio, events=tuple(events), duration=duration)


def write_dataset(out: str | Path, num_classes: int, videos_per_class: int, seed: int, *,
                  height: int = 96, width: int = 128, fps: int = 25, sample_rate: int = 48000,
                  test_fraction: float = 0.25, timing: Timing = Timing(), ball_radius: float = BALL_RADIUS,
                  progress: bool = True) -> dict:
  """Writes the whole dataset; returns the ground truth that goes into events.json."""
  out = Path(out)
  num_test = int(round(videos_per_class * test_fraction)) if videos_per_class > 1 else 0
  num_test = min(max(num_test, 1 if videos_per_class > 1 else 0), videos_per_class - 1)
  truth = {"fps": fps, "sample_rate": sample_rate, "height": height, "width": width, "seed": seed,
           "video_codec": video_codec(), "audio_codec": "aac", "right_gain": RIGHT_GAIN, "videos": {}}
  train, test, mapping = [], [], {}
  jobs = [(c, i) for c in range(num_classes) for i in range(videos_per_class)]
  for c, i in tqdm(jobs, desc="synthetic videos", disable=not progress):
    spec = class_spec(c)
    mapping[spec.folder] = spec.prompt
    rel = f"{spec.folder}/{spec.folder}_{i:03d}.mp4"
    clip = make_clip(seed, c, i, height=height, width=width, fps=fps, sample_rate=sample_rate,
                     timing=timing, ball_radius=ball_radius)
    write_mp4(out / "videos" / rel, clip.frames, fps, clip.audio, sample_rate)
    (test if i >= videos_per_class - num_test else train).append(rel)
    truth["videos"][rel] = {"class": spec.folder, "class_index": c, "video_index": i,
                            "behaviour": spec.behaviour, "sound": spec.sound,
                            "events": list(clip.events), "duration": clip.duration,
                            "num_frames": len(clip.frames)}
  write_text_atomic(out / "train.txt", train)
  write_text_atomic(out / "test.txt", test)
  write_json_atomic(out / "class_mapping.json", mapping)
  write_json_atomic(out / "events.json", truth)
  return truth


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """Command-line flags (defined only when run as a program, so importing never clashes)."""
  flags.DEFINE_string("out", None, "Output dataset folder.", flag_values=fv)
  flags.DEFINE_integer("num_classes", 3, "Number of classes.", flag_values=fv)
  flags.DEFINE_integer("videos_per_class", 4, "Videos per class (about a quarter go to test).", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same dataset.", flag_values=fv)
  flags.DEFINE_integer("height", 96, "Frame height.", flag_values=fv)
  flags.DEFINE_integer("width", 128, "Frame width.", flag_values=fv)
  flags.DEFINE_integer("fps", 25, "Video frame rate.", flag_values=fv)
  flags.DEFINE_integer("sample_rate", 48000, "Audio sample rate.", flag_values=fv)
  for name in ("num_classes", "videos_per_class", "sample_rate"):
    flags.DEFINE_alias(name.replace("_", "-"), name, flag_values=fv)


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not fv.out:
    raise app.UsageError("--out is required")
  out = Path(fv.out)
  if out.exists() and not out.is_dir():
    raise app.UsageError(f"--out {out}: exists and is not a folder; choose a folder path")
  for flag, low in (("num_classes", 1), ("videos_per_class", 1), ("height", 16), ("width", 16),
                    ("fps", 6), ("sample_rate", 8000)):
    if fv[flag].value < low:
      raise app.UsageError(f"--{flag.replace('_', '-')} {fv[flag].value}: must be at least {low}")
  for flag in ("height", "width"):
    if fv[flag].value % 2:
      raise app.UsageError(f"--{flag} {fv[flag].value}: must be even (H.264 with 4:2:0 chroma)")
  truth = write_dataset(fv.out, fv.num_classes, fv.videos_per_class, fv.seed,
                        height=fv.height, width=fv.width, fps=fv.fps,
                        sample_rate=fv.sample_rate)
  print(f"wrote {len(truth['videos'])} videos ({truth['video_codec']} + aac) to {fv.out}")


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
