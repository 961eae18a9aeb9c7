"""The run spec: everything a consumer needs to use a trained model, recorded once where it is made.

Training writes it into WORKDIR/run.json (under "spec"); `convert.from_pytorch` writes it
into CKPT/run_spec.json with the released recipe's values. The pipeline, the sampling CLI,
the export to PyTorch (its `scheduler/`) and the demo report read it from there and from
nowhere else, so a run trained with another schedule, prediction type or frame size is
sampled with its own.

Folders written before the spec existed are read by a documented derivation
(docs/sampling.md, "The run spec"): `workdir.read_spec` and `read_checkpoint_spec`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from asva_jax.constants import CLIP_SECONDS, DEFAULT_FRAME_SIZE, FPS, NUM_FRAMES, SD15_SCALING_FACTOR
from asva_jax.constants import SAMPLE_RATE as AUDIO_SAMPLE_RATE
from asva_jax.errors import AsvaError
from asva_jax.storage import as_path, write_json_atomic  # local or gs://
from asva_jax.schedulers.noise_schedule import PREDICTION_TYPES

VERSION = 1
SPEC_FILE = "run_spec.json"  # in a converted checkpoint folder
BETA_SCHEDULES = ("scaled_linear",)
AUTOENCODERS = ("vae", "space_to_depth")

# Frame size per dataset of the recipe (docs/reference.md §6.5), for converted checkpoints.
RECIPE_FRAME_SIZES = {"avsync15": DEFAULT_FRAME_SIZE, "landscapes": DEFAULT_FRAME_SIZE, "thegreatesthits": (128, 256)}


class RunSpecError(AsvaError, ValueError):
  """A missing, malformed or unsupported run spec."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Noise schedule, prediction type, latent scaling, autoencoder, clip shape and class prompts of a run."""
  num_train_timesteps: int
  beta_start: float
  beta_end: float
  beta_schedule: str            # "scaled_linear": betas = linspace(sqrt(start), sqrt(end), T)^2
  prediction_type: str          # what the UNet outputs: "epsilon" or "v_prediction"
  scaling_factor: float         # latents = autoencoder sample x scaling_factor
  autoencoder: str              # "vae" | "space_to_depth"
  autoencoder_factor: int       # spatial downsampling of the autoencoder (8 for SD1.5's VAE)
  num_frames: int
  fps: int
  frame_size: tuple[int, int]   # (H, W) the model was trained at
  audio_seconds: float
  audio_sample_rate: int
  class_prompts: tuple[str, ...]  # the categories the run was trained with (null text excluded)

  def __post_init__(self):
    problems = []
    if self.beta_schedule not in BETA_SCHEDULES:
      problems.append(f"beta_schedule {self.beta_schedule!r} (supported: {', '.join(BETA_SCHEDULES)})")
    if self.prediction_type not in PREDICTION_TYPES:
      problems.append(f"prediction_type {self.prediction_type!r} (expected {' or '.join(PREDICTION_TYPES)})")
    if self.autoencoder not in AUTOENCODERS:
      problems.append(f"autoencoder {self.autoencoder!r} (expected {' or '.join(AUTOENCODERS)})")
    if not 0 < self.beta_start < self.beta_end < 1:
      problems.append(f"betas {self.beta_start}, {self.beta_end} (need 0 < beta_start < beta_end < 1)")
    if self.num_train_timesteps < 2 or self.num_frames < 2 or self.fps < 1 or self.autoencoder_factor < 1:
      problems.append("num_train_timesteps, num_frames, fps and autoencoder_factor must be positive")
    h, w = self.frame_size
    if h < 1 or w < 1 or h % self.autoencoder_factor or w % self.autoencoder_factor:
      problems.append(f"frame_size {h}x{w} (positive multiples of the autoencoder factor "
                      f"{self.autoencoder_factor})")
    if problems:
      raise RunSpecError("; ".join(problems))

  def alphas_cumprod(self) -> np.ndarray:
    """ᾱ_t of the run's training schedule, float32 (T,)."""
    from asva_jax.schedulers.noise_schedule import scaled_linear_alphas_cumprod
    return scaled_linear_alphas_cumprod(self.num_train_timesteps, self.beta_start, self.beta_end)

  def scheduler_config(self) -> dict:
    """diffusers' `scheduler_config.json` of the original's sampler (PNDM, PLMS steps) on this schedule."""
    return {"_class_name": "PNDMScheduler", "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start, "beta_end": self.beta_end,
            "num_train_timesteps": self.num_train_timesteps, "set_alpha_to_one": False,
            "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False,
            "prediction_type": self.prediction_type}

  def with_prompts(self, prompts) -> RunSpec:
    return dataclasses.replace(self, class_prompts=tuple(sorted(p for p in set(prompts) if p)))

  def to_json(self) -> dict:
    fields = dataclasses.asdict(self)
    fields["frame_size"] = list(self.frame_size)
    fields["class_prompts"] = list(self.class_prompts)
    return {"version": VERSION, **fields}

  @classmethod
  def from_json(cls, data, source: str) -> RunSpec:
    """The spec stored at `source` (named in every error)."""
    if not isinstance(data, dict):
      raise RunSpecError(f"{source}: the run spec is not a JSON object")
    if data.get("version") != VERSION:
      raise RunSpecError(f"{source}: run spec version {data.get('version')!r}; this asva-jax reads "
                         f"version {VERSION}")
    names = {f.name for f in dataclasses.fields(cls)}
    missing, unknown = sorted(names - set(data)), sorted(set(data) - names - {"version"})
    if missing or unknown:
      raise RunSpecError(f"{source}: run spec " + "; ".join(
          ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"]
                                                                    if unknown else [])))
    try:
      spec = cls(num_train_timesteps=int(data["num_train_timesteps"]), beta_start=float(data["beta_start"]),
                 beta_end=float(data["beta_end"]), beta_schedule=str(data["beta_schedule"]),
                 prediction_type=str(data["prediction_type"]), scaling_factor=float(data["scaling_factor"]),
                 autoencoder=str(data["autoencoder"]), autoencoder_factor=int(data["autoencoder_factor"]),
                 num_frames=int(data["num_frames"]), fps=int(data["fps"]),
                 frame_size=tuple(int(v) for v in data["frame_size"]),
                 audio_seconds=float(data["audio_seconds"]), audio_sample_rate=int(data["audio_sample_rate"]),
                 class_prompts=tuple(str(p) for p in data["class_prompts"]))
    except RunSpecError as e:
      raise RunSpecError(f"{source}: run spec: {e}") from None
    except (TypeError, ValueError) as e:
      raise RunSpecError(f"{source}: run spec has a malformed field ({e})") from None
    return spec


def autoencoder_factor(autoencoder) -> int:
  """Spatial downsampling of a built autoencoder: `SpaceToDepth.factor`, or 2^(levels - 1) for a VAE."""
  from asva_jax.models.space_to_depth import SpaceToDepth
  if isinstance(autoencoder, SpaceToDepth):
    return int(autoencoder.factor)
  return 2 ** (len(autoencoder.config.block_out_channels) - 1)


def from_config(config, *, frame_size, autoencoder_factor: int, class_prompts=()) -> RunSpec:
  """The spec of a training config (`config.diffusion`, `config.model`) at the data's frame size."""
  d = config.diffusion
  return RunSpec(
      num_train_timesteps=int(d.num_train_timesteps), beta_start=float(d.beta_start), beta_end=float(d.beta_end),
      beta_schedule="scaled_linear", prediction_type=str(d.prediction_type),
      scaling_factor=float(d.scaling_factor), autoencoder=str(config.model.autoencoder),
      autoencoder_factor=int(autoencoder_factor), num_frames=NUM_FRAMES, fps=FPS,
      frame_size=(int(frame_size[0]), int(frame_size[1])), audio_seconds=CLIP_SECONDS,
      audio_sample_rate=AUDIO_SAMPLE_RATE, class_prompts=tuple(sorted(p for p in class_prompts if p)))


def recipe(dataset: str = "avsync15", *, scaling_factor: float = SD15_SCALING_FACTOR, autoencoder_factor: int = 8,
           class_prompts=()) -> RunSpec:
  """The released recipe's spec for `dataset` (base_config's schedule, ε, the VAE)."""
  from asva_jax.training.defaults import base_config
  if dataset not in RECIPE_FRAME_SIZES:
    raise RunSpecError(f"unknown recipe {dataset!r}; expected one of {', '.join(RECIPE_FRAME_SIZES)}")
  config = base_config()
  config.diffusion.scaling_factor = float(scaling_factor)
  return from_config(config, frame_size=RECIPE_FRAME_SIZES[dataset], autoencoder_factor=autoencoder_factor,
                     class_prompts=class_prompts)


def stored_prompts(folder: str | os.PathLike) -> tuple[str, ...]:
  """The prompts of a `text_encodings/` folder's config.json (no tensors read); () when absent."""
  file = as_path(folder) / "config.json"
  if not file.is_file():
    return ()
  return tuple(sorted(p for p in json.loads(file.read_text()).get("prompts", []) if p))


def checkpoint_recipe(path: str | os.PathLike, dataset: str = "avsync15") -> RunSpec:
  """The recipe's spec for converted checkpoint folder `path`: its VAE's scaling factor and
  downsampling, its stored class prompts."""
  from asva_jax import component_folders
  path = as_path(path)
  vae = component_folders.load_config(path / "vae") if (path / "vae" / "config.json").is_file() else {}
  return recipe(dataset, scaling_factor=float(vae.get("scaling_factor", SD15_SCALING_FACTOR)),
                autoencoder_factor=2 ** (len(vae.get("block_out_channels", (1, 2, 3, 4))) - 1),
                class_prompts=stored_prompts(path / "text_encodings"))


def write_checkpoint_spec(path: str | os.PathLike, spec: RunSpec) -> None:
  write_json_atomic(as_path(path) / SPEC_FILE, spec.to_json())


def read_checkpoint_spec(path: str | os.PathLike) -> RunSpec:
  """CKPT/run_spec.json; a folder converted before it existed reads as the AVSync15 recipe
  (`checkpoint_recipe`): add the spec of another with `convert.from_pytorch --out CKPT --recipe NAME`."""
  file = as_path(path) / SPEC_FILE
  if not file.is_file():
    return checkpoint_recipe(path)
  try:
    data = json.loads(file.read_text())
  except json.JSONDecodeError as e:
    raise RunSpecError(f"{file}: not valid JSON ({e})") from None
  return RunSpec.from_json(data, str(file))


def read(path: str | os.PathLike) -> RunSpec:
  """The spec of either kind of `--ckpt`: a training workdir or a converted checkpoint folder."""
  from asva_jax import workdir
  return workdir.read_spec(path) if workdir.is_workdir(path) else read_checkpoint_spec(path)
