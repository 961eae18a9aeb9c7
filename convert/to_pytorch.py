r"""An asva-jax checkpoint folder -> folders the original PyTorch code loads.

  python -m convert.to_pytorch --ckpt CKPT --out FOLDER
  python -m convert.to_pytorch --ckpt WORKDIR [--step N] --out FOLDER

writes FOLDER/unet/ (config.json + diffusion_pytorch_model.safetensors, the
original's key names and shapes) and, when present in CKPT, FOLDER/audio_encoder/,
FOLDER/vae/, FOLDER/text_encoder/ and FOLDER/tokenizer/, each atomically.
A training workdir (`python -m asva_jax.train`) gives its trained UNet (frozen
base + trained parameters of step N, default the latest) and audio encoder; the
other components come from the checkpoint the run started from. A workdir trained with
`diffusion.prediction_type="v_prediction"` (the demo) also gets FOLDER/scheduler/ (SD1.5's
PNDM config with that prediction type), and a warning: the original pipeline takes its
scheduler from SD1.5 (ε) unless pointed at this one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from absl import app, flags, logging
from tqdm import tqdm

from asva_jax import command

FLAGS = flags.FLAGS
flags.DEFINE_string("ckpt", None, "asva-jax checkpoint folder (from convert.from_pytorch or training).",
                    required=True)
flags.DEFINE_string("out", None, "Output folder.", required=True)
flags.DEFINE_list("components", [], "Only these components (default: every one present).")
flags.DEFINE_integer("step", None, "With a training workdir as --ckpt: the checkpoint step (default latest).")

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
  from asva_jax import checkpoint
  from convert.components import write_component
  folder = ckpt / name
  if name == "tokenizer":
    write_component(out, name, lambda tmp: shutil.copytree(folder, tmp, dirs_exist_ok=True))
    return
  load, export = _exporters()[name]
  module, config = load(folder), checkpoint.load_config(folder)
  write_component(out, name, lambda tmp: export(module, config, tmp))


def export_workdir(workdir: Path, out: Path, names: list[str], step: int | None) -> list[str]:
  """A training run's trained UNet (and audio encoder) plus its base's other components."""
  from asva_jax import checkpoint, workdir as workdirs
  from convert.components import write_component
  trained = workdirs.load_models(workdir, step)
  base = workdirs.base_folder(workdir)
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
    config = checkpoint.load_config(base / name)
    write_component(out, name, lambda tmp, m=module, c=config, e=exporters[name][1]: e(m, c, tmp))
  if trained.prediction_type != "epsilon":
    write_scheduler(out, trained.config.diffusion, trained.prediction_type)
    logging.warning("%s predicts %s, not ε: sample the exported UNet with %s", workdir,
                    trained.prediction_type, out / "scheduler" / "scheduler_config.json")
    names = names + ["scheduler"]
  return names


def write_scheduler(out: Path, diffusion, prediction_type: str) -> None:
  """FOLDER/scheduler/scheduler_config.json: the original's PNDM (PLMS) on the run's own
  schedule (`config.diffusion`), with `prediction_type`."""
  from asva_jax.checkpoint import write_json_atomic
  (out / "scheduler").mkdir(parents=True, exist_ok=True)
  write_json_atomic(out / "scheduler" / "scheduler_config.json", {
      "_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
      "beta_start": float(diffusion.beta_start), "beta_end": float(diffusion.beta_end),
      "num_train_timesteps": int(diffusion.num_train_timesteps), "set_alpha_to_one": False,
      "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False, "prediction_type": prediction_type})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  from etils import epath
  ckpt, out = epath.Path(FLAGS.ckpt), Path(FLAGS.out)  # --ckpt: local or gs://
  if not ckpt.is_dir():
    raise app.UsageError(f"--ckpt {ckpt}: {'is a file, not' if ckpt.exists() else 'no such'} folder")
  if out.exists() and not out.is_dir():
    raise app.UsageError(f"--out {out}: exists and is not a folder; choose a folder path")
  from asva_jax.workdir import is_workdir
  if is_workdir(ckpt):
    names = export_workdir(ckpt, out, FLAGS.components, FLAGS.step)
    print(f"wrote {', '.join(names)} to {out}")
    return
  if FLAGS.step is not None:
    raise app.UsageError(f"--step: {ckpt} is a checkpoint folder, not a training workdir")
  present = [n for n in EXPORTABLE if (ckpt / n).is_dir()]
  if (ckpt / "config.json").is_file() and not present:
    raise app.UsageError(f"--ckpt {ckpt}: is one component folder; give the checkpoint folder above it "
                         f"(--ckpt {ckpt.parent}" + (f" --components {ckpt.name})" if ckpt.name in EXPORTABLE
                                                     else ")"))
  if not present:
    raise app.UsageError(f"--ckpt {ckpt}: holds none of the components {', '.join(EXPORTABLE)} "
                         f"(expected a folder written by convert.from_pytorch or a training workdir)")
  names = FLAGS.components or present
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
  print(f"wrote {', '.join(names)} to {out}")


def run() -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  command.run(main)


if __name__ == "__main__":
  run()
