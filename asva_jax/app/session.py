"""One request of the web app -> an mp4 with sound and a GIF, through the library's own sampling
job (`asva_jax.pipeline.jobs`: the same reading, checks, sampler and writer as
`python -m asva_jax.sample`), with no gradio in sight so that any front end can use it.

A `Studio` loads the models once and, at start-up, runs one sample with its default settings,
so that a request with those settings compiles nothing (`Result.compilations` says how many XLA
compilations a request ran). Other shapes of the same program compile once, on first use: a
different sampler or step count, or switching text guidance on or off (docs/app.md).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from asva_jax.app.compile_counter import CompileCounter
from asva_jax.errors import AsvaError


@dataclasses.dataclass(frozen=True)
class Settings:
  """What a request may choose besides its files (the sample command's flags of the same names)."""
  category: str = ""
  audio_guidance: float = 4.0
  text_guidance: float = 1.0
  scheduler: str = "pndm"
  steps: int = 50
  seed: int = 0
  start: float | None = None   # s; None: the centred 2-s clip, as the sample command's --num_clips 1


@dataclasses.dataclass(frozen=True)
class Result:
  mp4: Path
  gif: Path
  frames: int
  fps: int
  seconds: float
  compilations: int

  def summary(self) -> str:
    return (f"{self.frames} frames at {self.fps} fps with sound, in {self.seconds:.1f} s; "
            f"XLA compilations in this request: {self.compilations}")


def settings_from_config(config, fallback: Settings) -> Settings:
  """A demo workdir's sampling settings (its config's `demo` block), else `fallback`."""
  demo = getattr(config, "demo", None) if config is not None else None
  if demo is None:
    return fallback
  return dataclasses.replace(fallback, scheduler=str(demo.scheduler), steps=int(demo.num_inference_steps),
                             audio_guidance=float(demo.audio_guidance), text_guidance=float(demo.text_guidance),
                             seed=int(demo.seed))


class Studio:
  """The models, loaded once, and a private folder for what requests write (removed by `close`)."""

  def __init__(self, models, defaults: Settings, *, gif: bool = True):
    self.models, self.defaults, self.gif = models, defaults, gif
    self.folder = Path(tempfile.mkdtemp(prefix="asva-app-"))
    self.counter = CompileCounter().start()
    self.startup_compilations = 0
    self._requests = 0

  @property
  def classes(self) -> list[str]:
    return list(self.models.spec.class_prompts)

  @property
  def free_prompts(self) -> bool:
    """A text encoder computes any prompt; otherwise only the stored classes have encodings."""
    return self.models.encode_prompts is not None

  @property
  def size(self) -> tuple[int, int]:
    return tuple(self.models.spec.frame_size)

  def warm_up(self) -> int:
    """Samples a grey image with silence at the default settings: every program a default request
    runs is compiled here. Returns how many compilations that took."""
    from asva_jax.constants import CLIP_SECONDS, NULL_PROMPT, SAMPLE_RATE
    from asva_jax.pipeline import Clip, sample
    s = self.defaults
    image = np.full(self.size + (3,), 128, np.uint8)
    audio = np.zeros(int(CLIP_SECONDS * SAMPLE_RATE), np.float32)
    prompt = (s.category or (self.classes[0] if self.classes else NULL_PROMPT))
    before = self.counter.count
    sample(self.models, [Clip(image, audio, prompt)], seeds=s.seed, **_sampler_options(s))
    self.startup_compilations = self.counter.count - before
    return self.startup_compilations

  def animate(self, *, image: str | None = None, audio: str | None = None, video: str | None = None,
              settings: Settings, progress: Callable[[float, str], None] = lambda f, d: None) -> Result:
    """Checks the inputs as the sample command does (the same `AsvaError` messages), samples one
    2-s clip and writes OUT.mp4 and OUT.gif into a fresh folder of this studio."""
    from asva_jax.pipeline import jobs, pipeline
    from asva_jax.schedulers import make_plan
    t0, before = time.perf_counter(), self.counter.count
    self._requests += 1
    out = self.folder / f"request-{self._requests:04d}" / "animation.mp4"
    o = jobs.SampleOptions(ckpt=self.models.source, image=image or None, audio=audio or None, video=video or None,
                           category=settings.category, out=str(out), start=settings.start, steps=settings.steps,
                           scheduler=settings.scheduler, seed=settings.seed)
    if not settings.category:
      raise jobs.JobError("choose a category" + (" or type a prompt" if self.free_prompts else ""))
    job = jobs.single_job(o)
    make_plan(o.scheduler, o.steps)  # a bad step count fails before any work
    progress(0.05, "reading the image and the audio")
    job = jobs.read_job(dict(job, num_clips=None if o.start is not None else 1))
    clips, outs, _ = jobs.plan_job(job, self.size)
    self.models.text_encodings[settings.category]  # an unknown category fails before sampling
    progress(0.2, f"sampling: {o.scheduler}, {o.steps} steps")
    frames = pipeline.sample(self.models, clips[:1], seeds=o.seed, **_sampler_options(settings))
    progress(0.9, "writing the mp4 and the GIF")
    out.parent.mkdir(parents=True)
    jobs.write(out, frames[0], outs[0][1], self.models.spec.fps, gif=self.gif)
    return Result(mp4=out, gif=out.with_suffix(".gif"), frames=len(frames[0]), fps=self.models.spec.fps,
                  seconds=time.perf_counter() - t0, compilations=self.counter.count - before)

  def close(self) -> None:
    self.counter.close()
    shutil.rmtree(self.folder, ignore_errors=True)


def _sampler_options(s: Settings) -> dict:
  return dict(audio_guidance=s.audio_guidance, text_guidance=s.text_guidance, num_inference_steps=s.steps,
              scheduler=s.scheduler)


def user_message(error: AsvaError, uploads: dict[str, str | None]) -> str:
  """The error's one line, with each uploaded file's server-side temporary path shown as the name
  the user gave it."""
  text = str(error)
  for path in uploads.values():
    if path:
      text = text.replace(str(path), Path(path).name)
  return text
