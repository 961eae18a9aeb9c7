"""The demo's proof that sound drives motion: sample every held-out clip twice and score it.

After training, each test clip (the centre 2 s of a held-out synthetic video) is animated
from its first frame twice, with the same noise: once with its own audio and once with the
audio of another test clip of the same class (a rotation within each class, so the sound is
of the right kind and only its timing is wrong). The event-timing error of both samples is
measured against the clip's own, known audio events (`asva_jax.eval.sync`): a model that
follows the audio is close to its own events with its own audio and far from them with
another clip's audio; a model that ignores the audio scores the same on both. Each sample is
also scored against the events of the audio that drove it (`*_vs_driving_audio`): low for both
when the motion follows whichever audio it was given. `sample_noise` measures how much the
samples flicker where the real clips are still (`asva_jax.demo.noise`). A run with EMA weights
is sampled with them (`weights`).

Written under WORKDIR:
  demo/samples/<clip>_own_audio.mp4, <clip>_shuffled_audio.mp4   (with the conditioning audio)
  demo/side_by_side.gif       real | own audio | shuffled audio, a strip lit by each audio's onsets
  demo/onset_vs_motion.png    one clip: audio onset envelope against the sampled motion energy
  sync_report.json            the means ("true_audio", "shuffled_audio"), the sample noise and every
                              clip's values
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from asva_jax.constants import FPS, SAMPLE_RATE
from asva_jax.eval import sync
from asva_jax.storage import write_json_atomic

REPORT = "sync_report.json"


@dataclasses.dataclass
class HeldOutClip:
  name: str            # the video's key without ".mp4", with "/" -> "__"
  key: str
  prompt: str
  frames: np.ndarray   # (F, H, W, 3) uint8, the real clip
  audio: np.ndarray    # (32000,) float32, 16 kHz
  frame_times: np.ndarray  # (F,) s, presentation times of the frames
  start: float         # s, the clip's start = time of audio[0]
  events: np.ndarray   # frame indices (>= 1) of the true audio events


def held_out_clips(shards, events_file) -> list[HeldOutClip]:
  """The centre clip of every test video, with its known event frames."""
  from asva_jax.data import clips as clip_rules
  from asva_jax.data import open_split
  from asva_jax.data.features import AUDIO_SAMPLE_RATE, audio_start, frame_times
  from asva_jax.data.transforms import make_clip
  truth = json.loads(Path(events_file).read_text())["videos"]
  source = open_split(shards, "test")
  out = []
  for i in range(len(source)):
    record = source[i]
    key = record["key"].decode() if isinstance(record["key"], bytes) else str(record["key"])
    start = float(clip_rules.uniform_starts(float(record["duration"]), 1)[0])
    example = make_clip(record, start, flip=False)
    times = frame_times(record)[clip_rules.select_frames(frame_times(record), start)]
    audio = clip_rules.audio_window(np.asarray(record["audio"]), start, AUDIO_SAMPLE_RATE,
                                    audio_start=audio_start(record))
    audio = np.pad(audio, (0, max(0, 2 * AUDIO_SAMPLE_RATE - len(audio))))[:2 * AUDIO_SAMPLE_RATE]
    prompt = example["prompt"].decode() if isinstance(example["prompt"], bytes) else str(example["prompt"])
    out.append(HeldOutClip(name=key.removesuffix(".mp4").replace("/", "__"), key=key, prompt=prompt,
                        frames=example["video"], audio=audio.astype(np.float32), frame_times=times,
                        start=start, events=sync.event_frames(truth[key]["events"], times)))
  return out


def by_class(clips: list[HeldOutClip]) -> dict[str, list[int]]:
  """Clip indices per class (prompt), in clip order."""
  groups: dict[str, list[int]] = {}
  for i, c in enumerate(clips):
    groups.setdefault(c.prompt, []).append(i)
  return groups


def shuffled_partner(clips: list[HeldOutClip]) -> list[int]:
  """For each clip, another clip whose audio it is sampled with: the next clip of the same class
  (by prompt) when the class has several, else the next clip overall."""
  partner = [(i + 1) % len(clips) for i in range(len(clips))]
  for members in by_class(clips).values():
    if len(members) > 1:
      for j, i in enumerate(members):
        partner[i] = members[(j + 1) % len(members)]
  return partner


def score(videos: np.ndarray, clips: list[HeldOutClip], audio_of: list[int]) -> list[dict]:
  """Per clip: the event-timing error against the clip's own events and against the events of the
  audio that conditioned the video, and the onset alignment with that audio."""
  rows = []
  for video, clip, a in zip(videos, clips, audio_of):
    env = sync.onset_envelope(clips[a].audio, SAMPLE_RATE, clip.frame_times, clip.start)
    alignment = sync.onset_alignment(env, sync.change_energy(video), FPS)
    rows.append({"event_timing_error": sync.event_timing_error(video, clip.events),
                 "driving_audio_error": sync.event_timing_error(video, clips[a].events),
                 "onset_alignment": alignment.to_dict()})
  return rows


def gif_rows(clips: list[HeldOutClip], n: int) -> list[int]:
  """Up to n clip indices taken from each class in turn, so the GIF shows every class."""
  classes = list(by_class(clips).values())
  order = [members[rank] for rank in range(len(clips)) for members in classes if rank < len(members)]
  return order[:n]


def _mean(values) -> float | None:
  values = [v for v in values if v is not None and np.isfinite(v)]
  return float(np.mean(values)) if values else None


def _upscale(video: np.ndarray, factor: int) -> np.ndarray:
  return np.repeat(np.repeat(video, factor, axis=-3), factor, axis=-2) if factor > 1 else video


def write_demo_outputs(config, workdir, models=None, *, raw_weights: bool = False) -> dict:
  """Samples, scores and writes everything listed in the module docstring; returns the report.
  `raw_weights`: sample a run that keeps EMA weights with its raw ones (to compare)."""
  from asva_jax.demo import figures
  from asva_jax.demo.noise import noise_report
  from asva_jax.training.trained import weights_item
  from asva_jax.pipeline import Clip, load_models, sample_batched
  from asva_jax.media.mp4 import write_mp4

  t0 = time.perf_counter()
  workdir = Path(workdir)
  d = config.demo
  data = workdir / "data"
  clips = held_out_clips(data / "shards", data / "synthetic" / "events.json")
  clips = [c for c in clips if len(c.events)]
  if len(clips) < 2:
    raise ValueError(f"{workdir}: {len(clips)} held-out clips with audio events; the demo needs at least 2 "
                     "(raise --config.data.synthetic.videos_per_class)")
  partner = shuffled_partner(clips)
  if models is None:
    models = load_models(workdir, raw_weights=raw_weights)
  options = dict(batch_size=int(d.batch_size), seeds=[int(d.seed) + i for i in range(len(clips))],
                 audio_guidance=float(d.audio_guidance), text_guidance=float(d.text_guidance),
                 num_inference_steps=int(d.num_inference_steps), scheduler=str(d.scheduler))
  own = sample_batched(models, [Clip(c.frames[0], c.audio, c.prompt) for c in clips], **options)
  shuffled = sample_batched(models, [Clip(c.frames[0], clips[p].audio, c.prompt)
                                     for c, p in zip(clips, partner)], **options)
  sampled_s = time.perf_counter() - t0

  own_rows = score(own, clips, list(range(len(clips))))
  shuffled_rows = score(shuffled, clips, partner)
  real = np.stack([c.frames for c in clips])
  real_rows = score(real, clips, list(range(len(clips))))
  noise = noise_report(real, {"own_audio": own, "shuffled_audio": shuffled})
  real_shuffled = [sync.event_timing_error(c.frames, clips[p].events) for c, p in zip(clips, partner)]

  out = workdir / "demo"
  scale = int(d.video_scale)
  per_clip = []
  for i, (clip, p) in enumerate(zip(clips, partner)):
    paths = {}
    for kind, videos, audio in (("own_audio", own, clip.audio), ("shuffled_audio", shuffled, clips[p].audio)):
      path = out / "samples" / f"{clip.name}_{kind}.mp4"
      write_mp4(path, _upscale(videos[i], scale), FPS, audio[None], SAMPLE_RATE)
      paths[kind] = str(path.relative_to(workdir))
    per_clip.append({
        "clip": clip.key, "prompt": clip.prompt, "start": clip.start, "event_frames": clip.events.tolist(),
        "shuffled_audio_from": clips[p].key, "shuffled_audio_event_frames": clips[p].events.tolist(),
        "true_audio": own_rows[i]["event_timing_error"],
        "shuffled_audio": shuffled_rows[i]["event_timing_error"],
        "shuffled_audio_vs_driving_audio": shuffled_rows[i]["driving_audio_error"],
        "onset_alignment": {"true_audio": own_rows[i]["onset_alignment"],
                            "shuffled_audio": shuffled_rows[i]["onset_alignment"]},
        "videos": paths})

  rows = gif_rows(clips, int(d.gif_rows))
  envelopes = np.stack([sync.onset_envelope(c.audio, SAMPLE_RATE, c.frame_times, c.start) for c in clips])
  gif = figures.side_by_side_gif(
      out / "side_by_side.gif",
      {"real video": _upscale(np.stack([clips[i].frames for i in rows]), 1),
       "own audio": own[rows], "shuffled audio": shuffled[rows]},
      {"real video": envelopes[rows], "own audio": envelopes[rows],
       "shuffled audio": envelopes[np.asarray(partner)[rows]]},
      fps=FPS, scale=max(scale, 1))
  best = int(np.argmin([r["true_audio"] - r["shuffled_audio"] for r in per_clip]))
  c = clips[best]
  png = figures.envelope_plot(
      out / "onset_vs_motion.png",
      {"audio onset": envelopes[best], "own audio": sync.change_energy(own[best]),
       "shuffled audio": sync.change_energy(shuffled[best])},
      c.events, f"{c.key}: audio onset envelope vs motion energy of the sampled videos")

  true_mean = _mean([r["true_audio"] for r in per_clip])
  shuffled_mean = _mean([r["shuffled_audio"] for r in per_clip])
  report = {
      "true_audio": true_mean, "shuffled_audio": shuffled_mean,
      "ratio": true_mean / shuffled_mean if true_mean is not None and shuffled_mean else None,
      "shuffled_audio_vs_driving_audio": _mean([r["shuffled_audio_vs_driving_audio"] for r in per_clip]),
      "measure": "event-timing error in frames (asva_jax.eval.sync): mean over held-out clips of the "
                 "mean distance from each detected motion event to the nearest true audio event",
      "num_clips": len(clips),
      "onset_alignment_lag0": {
          "true_audio": _mean([r["onset_alignment"]["true_audio"]["lag0"] for r in per_clip]),
          "shuffled_audio": _mean([r["onset_alignment"]["shuffled_audio"]["lag0"] for r in per_clip])},
      "real_videos": {"true_audio": _mean([r["event_timing_error"] for r in real_rows]),
                      "shuffled_audio": _mean(real_shuffled)},
      "sample_noise": noise,
      "weights": "ema" if weights_item(getattr(models, "config", None), raw_weights) == "ema" else "raw",
      "sampler": {k: options[k] for k in ("audio_guidance", "text_guidance", "num_inference_steps",
                                          "scheduler")}
                 | {"seed": int(d.seed), "prediction_type": models.spec.prediction_type},
      "step": models.step,
      "sampling_seconds": sampled_s,
      "gif": str(gif.relative_to(workdir)), "plot": str(png.relative_to(workdir)),
      "clips": per_clip,
  }
  write_json_atomic(workdir / REPORT, report)
  return report
