r"""An asva-jax checkpoint folder -> folders the original PyTorch code loads.

  python -m convert.to_pytorch --ckpt CKPT --out FOLDER
  python -m convert.to_pytorch --ckpt WORKDIR [--step N] --out FOLDER

writes FOLDER/unet/ (config.json + diffusion_pytorch_model.safetensors, the
original's key names and shapes) and, when present in CKPT, FOLDER/audio_encoder/,
FOLDER/vae/, FOLDER/text_encoder/ and FOLDER/tokenizer/, each atomically.
A training workdir (`python -m asva_jax.train`) gives its trained UNet (frozen
base + trained parameters of step N, default the latest; its EMA weights when the run
keeps them, --raw_weights for the raw ones) and audio encoder; the other components come from the checkpoint the run started from. Both kinds also get
FOLDER/scheduler/scheduler_config.json: the original's PNDM on the noise schedule and
prediction type of CKPT's run spec (`asva_jax.run_spec`); when these differ from SD1.5's
(e.g. the demo's v-prediction) a warning says so: the original pipeline takes its
scheduler from SD1.5 unless pointed at this one.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from absl import app, flags, logging
from tqdm import tqdm

from asva_jax.commands import runner


@dataclasses.dataclass(frozen=True)
class ToPytorchOptions:
  """What to export (the flags of the same names)."""
  ckpt: str
  out: str
  components: tuple[str, ...] = ()
  step: int | None = None
  raw_weights: bool = False


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_string("ckpt", None, "asva-jax checkpoint folder (from convert.from_pytorch or training).",
                      required=True, flag_values=fv)
  flags.DEFINE_string("out", None, "Output folder.", required=True, flag_values=fv)
  flags.DEFINE_list("components", [], "Only these components (default: every one present, and scheduler).",
                    flag_values=fv)
  flags.DEFINE_integer("step", None, "With a training workdir as --ckpt: the checkpoint step (default latest).",
                       flag_values=fv)
  flags.DEFINE_bool("raw_weights", False, "With a training workdir that keeps EMA weights: export the raw "
                    "weights instead of the EMA.", flag_values=fv)


EXPORTABLE = ("unet", "audio_encoder", "vae", "text_encoder", "tokenizer")


def _exporters() -> dict:
  """component -> (loader of our checkpoint folder, writer of the PyTorch folder)."""
  from asva_jax.models.clip_text import load_text_encoder
  from asva_jax.models.imagebind_audio import load_audio_encoder
  from asva_jax.models.unet_3d import load_unet
  from asva_jax.models.vae import load_vae
  from convert.clip_text import export_text_encoder
  from convert.imagebind import export_audio_encoder
  from convert.unet import export_unet
  from convert.vae import export_vae
  return {"unet": (load_unet, export_unet), "audio_encoder": (load_audio_encoder, export_audio_encoder),
          "vae": (load_vae, export_vae), "text_encoder": (load_text_encoder, export_text_encoder)}


def export_one(name: str, ckpt: Path, out: Path) -> None:
  from asva_jax import component_folders
  from convert.components import write_component
  folder = ckpt / name
  if name == "tokenizer":
    write_component(out, name, lambda tmp: shutil.copytree(folder, tmp, dirs_exist_ok=True))
    return
  load, export = _exporters()[name]
  module, config = load(folder), component_folders.load_config(folder)
  write_component(out, name, lambda tmp: export(module, config, tmp))


def export_workdir(workdir: Path, out: Path, names: list[str], step: int | None,
                   raw_weights: bool = False) -> list[str]:
  """A training run's trained UNet (and audio encoder: its EMA weights when it has them, unless
  `raw_weights`) plus its base's other components."""
  from asva_jax import component_folders, run_folder
  from asva_jax.pipeline import load_models
  from convert.components import write_component
  trained = load_models(workdir, step, raw_weights=raw_weights)
  base = run_folder.base_folder(workdir)
  present = [n for n in EXPORTABLE if (base / n).is_dir()]
  names = names or present
  unknown = [n for n in names if n not in present]
  if unknown:
    raise app.UsageError(f"{workdir}: cannot export {unknown} (present: {present})")
  exporters = _exporters()
  for name in tqdm(names, desc=f"exporting step {trained.step}", unit="component"):
    module = {"unet": trained.unet, "audio_encoder": trained.audio_encoder}.get(name)
    if module is None:
      export_one(name, base, out)
      continue
    config = component_folders.load_config(base / name)
    write_component(out, name, lambda tmp, m=module, c=config, e=exporters[name][1]: e(m, c, tmp))
  return names


def write_scheduler(ckpt: Path, spec, out: Path) -> None:
  """FOLDER/scheduler/scheduler_config.json from CKPT's run spec `spec`."""
  from asva_jax import run_spec
  from asva_jax.storage import write_json_atomic
  config = spec.scheduler_config()
  (out / "scheduler").mkdir(parents=True, exist_ok=True)
  write_json_atomic(out / "scheduler" / "scheduler_config.json", config)
  if config != run_spec.recipe().scheduler_config():
    logging.warning("%s was trained with another schedule or prediction type (%s) than SD1.5's: sample the "
                    "exported UNet with %s", ckpt, spec.prediction_type, out / "scheduler" / "scheduler_config.json")


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  export(ToPytorchOptions(fv.ckpt, fv.out, tuple(fv.components or ()), fv.step, fv.raw_weights))


def export(o: ToPytorchOptions) -> None:
  """Writes the PyTorch folders of `o.ckpt` into `o.out` (see the module docstring)."""
  from etils import epath
  ckpt, out = epath.Path(o.ckpt), Path(o.out)  # --ckpt: local or gs://
  if not ckpt.is_dir():
    raise app.UsageError(f"--ckpt {ckpt}: {'is a file, not' if ckpt.exists() else 'no such'} folder")
  if out.exists() and not out.is_dir():
    raise app.UsageError(f"--out {out}: exists and is not a folder; choose a folder path")
  from asva_jax.run_folder import is_workdir
  from asva_jax import run_spec
  scheduler = not o.components or "scheduler" in o.components
  components = [c for c in o.components if c != "scheduler"]
  only_scheduler = bool(o.components) and not components
  spec = run_spec.read(ckpt)  # a bad spec fails before anything is written
  if is_workdir(ckpt):
    names = [] if only_scheduler else export_workdir(ckpt, out, components, o.step, o.raw_weights)
    if scheduler:
      write_scheduler(ckpt, spec, out)
    print(f"wrote {', '.join(names + ['scheduler'] * scheduler)} to {out}")
    return
  for flag, given in (("--step", o.step is not None), ("--raw_weights", o.raw_weights)):
    if given:
      raise app.UsageError(f"{flag}: {ckpt} is a checkpoint folder, not a training workdir")
  present = [n for n in EXPORTABLE if (ckpt / n).is_dir()]
  if (ckpt / "config.json").is_file() and not present:
    raise app.UsageError(f"--ckpt {ckpt}: is one component folder; give the checkpoint folder above it "
                         f"(--ckpt {ckpt.parent}" + (f" --components {ckpt.name})" if ckpt.name in EXPORTABLE
                                                     else ")"))
  if not present:
    raise app.UsageError(f"--ckpt {ckpt}: holds none of the components {', '.join(EXPORTABLE)} "
                         f"(expected a folder written by convert.from_pytorch or a training workdir)")
  names = [] if only_scheduler else components or present
  unknown = [n for n in names if n not in present]
  if unknown:
    raise app.UsageError(f"--components: {ckpt} has no {', '.join(unknown)} to export "
                         f"(present: {', '.join(present)})")
  created = not out.exists()
  try:
    for name in tqdm(names, desc="exporting", unit="component"):
      export_one(name, ckpt, out)
  finally:
    if created and out.is_dir() and not any(out.iterdir()):
      out.rmdir()  # a failed first component leaves no empty --out behind
  if scheduler:
    write_scheduler(ckpt, spec, out)
  print(f"wrote {', '.join(names + ['scheduler'] * scheduler)} to {out}")


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
