r"""PyTorch checkpoints -> one asva-jax checkpoint folder.

  python -m convert.from_pytorch --sd15 SD15_ROOT --imagebind imagebind_huge.pth \
      [--avsyncd MODULES] --out CKPT
  python -m convert.from_pytorch --unet MODULES/unet --out CKPT          # one component

Each component lands in CKPT/<name>/ (config.json + Orbax params), written
atomically; converting into an existing folder replaces only the components
named on the command line. CKPT/run_spec.json (`asva_jax.run_spec`) records the recipe's
settings that sampling and export read: the SD1.5 schedule, ε-prediction, the VAE's scaling
and downsampling, 12 frames at 6 fps, 2-s audio, the stored class prompts and the frame
size of `--recipe` (avsync15 and landscapes 256 x 256, thegreatesthits 128 x 256; default:
the folder's recorded frame size, else avsync15's). Every conversion rewrites it;
`--out CKPT --recipe NAME` alone rewrites only it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from absl import app, flags, logging
from tqdm import tqdm

from asva_jax.commands import runner

# Flags named with a hyphen before issue 17 keep that spelling as an alias (README, docs/conversion.md).
_ALIASES = {"text_encoder": "text-encoder", "audio_encoder": "audio-encoder", "audio_config": "audio-config",
            "text_encodings": "text-encodings", "null_text_encoding": "null-text-encoding"}


@dataclasses.dataclass(frozen=True)
class FromPytorchOptions:
  """What to convert (the flags of the same names)."""
  out: str
  unet: str | None = None
  sd15: str | None = None
  avsyncd: str | None = None
  vae: str | None = None
  text_encoder: str | None = None
  tokenizer: str | None = None
  imagebind: str | None = None
  audio_encoder: str | None = None
  audio_config: str | None = None
  text_encodings: tuple[str, ...] = ()
  null_text_encoding: str | None = None
  seed: int = 0
  recipe: str | None = None


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_string("out", None, "Output JAX checkpoint folder.", required=True, flag_values=fv)
  flags.DEFINE_string("unet", None, "An AVSyncD unet/ folder (config.json + weights).", flag_values=fv)
  flags.DEFINE_string("sd15", None, "An SD1.5 root: unet/ (inflated to video), vae/, text_encoder/, "
                      "tokenizer/, scheduler/.", flag_values=fv)
  flags.DEFINE_string("avsyncd", None, "A released AVSyncD modules/ folder: unet/ and audio_encoder/.",
                      flag_values=fv)
  flags.DEFINE_string("vae", None, "A diffusers vae/ folder.", flag_values=fv)
  flags.DEFINE_string("text_encoder", None, "A transformers text_encoder/ folder (CLIP text model).",
                      flag_values=fv)
  flags.DEFINE_string("tokenizer", None, "A CLIPTokenizer tokenizer/ folder.", flag_values=fv)
  flags.DEFINE_string("imagebind", None, "The original imagebind_huge.pth (audio branch is used).",
                      flag_values=fv)
  flags.DEFINE_string("audio_encoder", None, "AVSyncD's audio_encoder/ folder.", flag_values=fv)
  flags.DEFINE_string("audio_config", None, "JSON file or string with the audio encoder's dimensions "
                      "(embed_dim, num_blocks, num_heads, out_embed_dim) for non-default sizes.",
                      flag_values=fv)
  flags.DEFINE_list("text_encodings", [], "Precomputed class_clip_text_encodings_*.pt files.", flag_values=fv)
  flags.DEFINE_string("null_text_encoding", None, "openai-clip-l_null_text_encoding.pt; by default the "
                      "null encoding is computed from the text encoder when it is converted.", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed for the new _temp/_audio parameters of an inflated SD1.5 UNet.",
                       flag_values=fv)
  flags.DEFINE_enum("recipe", None, ["avsync15", "landscapes", "thegreatesthits"],
                    "Whose released recipe the run spec records (frame size); default avsync15.",
                    flag_values=fv)
  runner.define_aliases(_ALIASES, fv)


def options(fv: flags.FlagValues = flags.FLAGS) -> FromPytorchOptions:
  values = runner.option_values(FromPytorchOptions, fv)
  return FromPytorchOptions(**dict(values, text_encodings=tuple(values["text_encodings"] or ())))


def _audio_config(o: FromPytorchOptions) -> dict | None:
  value = o.audio_config
  if not value:
    return None
  path = Path(value)
  if path.is_dir():
    raise app.UsageError(f"--audio_config {value}: is a folder; give a JSON file or a JSON string")
  text = path.read_text() if path.is_file() else value
  try:
    config = json.loads(text)
  except json.JSONDecodeError as e:
    raise app.UsageError(f"--audio_config {value}: neither a JSON file nor JSON ({e})") from None
  if not isinstance(config, dict):
    raise app.UsageError(f"--audio_config {value}: expected a JSON object such as {{\"num_heads\": 4}}")
  return config


def plan(o: FromPytorchOptions) -> list[tuple[str, str, object]]:
  """(component, kind, source) for everything the flags ask for; later entries win."""
  jobs: dict[str, tuple[str, object]] = {}
  if o.sd15:
    root = Path(o.sd15)
    jobs["unet"] = ("sd15_unet", root / "unet")
    jobs["vae"] = ("vae", root / "vae")
    jobs["text_encoder"] = ("text_encoder", root / "text_encoder")
    jobs["tokenizer"] = ("tokenizer", root / "tokenizer")
    if (root / "scheduler").is_dir():
      jobs["scheduler"] = ("scheduler", root / "scheduler")
  if o.imagebind:
    jobs["audio_encoder"] = ("imagebind", Path(o.imagebind))
  if o.avsyncd:
    jobs["unet"] = ("unet", Path(o.avsyncd) / "unet")
    jobs["audio_encoder"] = ("audio_encoder", Path(o.avsyncd) / "audio_encoder")
  for name, flag, kind in (("unet", "unet", "unet"), ("vae", "vae", "vae"),
                           ("text_encoder", "text_encoder", "text_encoder"),
                           ("tokenizer", "tokenizer", "tokenizer"),
                           ("audio_encoder", "audio_encoder", "audio_encoder")):
    if getattr(o, flag):
      jobs[name] = (kind, Path(getattr(o, flag)))
  if o.text_encodings or o.null_text_encoding or "text_encoder" in jobs:
    jobs["text_encodings"] = ("text_encodings", None)
  return [(name, kind, src) for name, (kind, src) in jobs.items()]


# Which flags name a file (the others name folders).
_FILE_FLAGS = ("imagebind", "null_text_encoding", "audio_config")


def check_inputs(o: FromPytorchOptions) -> None:
  """Every path given on the command line exists and is of the right kind, before anything is written."""
  for flag in ("unet", "sd15", "avsyncd", "vae", "text_encoder", "tokenizer", "imagebind",
               "audio_encoder", "null_text_encoding"):
    value = getattr(o, flag)
    if not value:
      continue
    path = Path(value)
    if not path.exists():
      raise app.UsageError(f"--{flag} {value}: no such {'file' if flag in _FILE_FLAGS else 'folder'}")
    if flag in _FILE_FLAGS and path.is_dir():
      raise app.UsageError(f"--{flag} {value}: is a folder; expected a file")
    if flag not in _FILE_FLAGS and not path.is_dir():
      raise app.UsageError(f"--{flag} {value}: is a file; expected a folder")
  for value in o.text_encodings:
    if not Path(value).is_file():
      raise app.UsageError(f"--text_encodings: {value}: no such file")
  if o.sd15:
    for sub in ("unet", "vae", "text_encoder", "tokenizer"):
      if not (Path(o.sd15) / sub).is_dir():
        raise app.UsageError(f"--sd15 {o.sd15}: no {sub}/ folder (expected an SD1.5 root with unet/, "
                             f"vae/, text_encoder/, tokenizer/)")
  if o.avsyncd:
    for sub in ("unet", "audio_encoder"):
      if not (Path(o.avsyncd) / sub).is_dir():
        raise app.UsageError(f"--avsyncd {o.avsyncd}: no {sub}/ folder (expected a released AVSyncD "
                             f"modules/ folder with unet/ and audio_encoder/)")
  out = Path(o.out)
  if out.exists() and not out.is_dir():
    raise app.UsageError(f"--out {out}: exists and is not a folder; choose a folder path")


def convert_one(name: str, kind: str, source, out: Path, o: FromPytorchOptions) -> bool:
  """Converts one component into `out/name`; False when there was nothing to write."""
  from asva_jax.component_folders import save_module
  from convert.components import write_component

  def save(result):
    module, config = result
    write_component(out, name, lambda tmp: save_module(tmp, module, config))

  if kind == "unet":
    from convert.unet import import_unet
    save(import_unet(source))
  elif kind == "sd15_unet":
    from convert.unet import inflate_sd15
    save(inflate_sd15(source, seed=o.seed))
  elif kind == "vae":
    from convert.vae import import_vae
    save(import_vae(source))
  elif kind == "text_encoder":
    from convert.clip_text import import_text_encoder
    save(import_text_encoder(source))
  elif kind == "tokenizer":
    from convert.clip_text import copy_tokenizer
    write_component(out, name, lambda tmp: copy_tokenizer(source, tmp))
  elif kind == "imagebind":
    from convert.imagebind import import_imagebind
    save(import_imagebind(source, _audio_config(o)))
  elif kind == "audio_encoder":
    from convert.imagebind import import_audio_encoder
    save(import_audio_encoder(source, _audio_config(o)))
  elif kind == "scheduler":
    write_component(out, name, lambda tmp: shutil.copy2(Path(source) / "scheduler_config.json", tmp))
  elif kind == "text_encodings":
    from convert.clip_text import import_text_encodings, save_text_encodings
    encodings = import_text_encodings(list(o.text_encodings))
    if o.null_text_encoding:
      encodings[""] = next(iter(import_text_encodings([o.null_text_encoding]).values()))
    elif "" not in encodings and (out / "text_encoder").is_dir() and (out / "tokenizer").is_dir():
      from asva_jax.models.clip_text import load_text_encoder
      from asva_jax.models.clip_tokenizer import encode_prompts, load_tokenizer
      encodings[""] = encode_prompts(load_text_encoder(out), load_tokenizer(out), [""])[0]
    if not encodings:
      return False
    write_component(out, name, lambda tmp: save_text_encodings(encodings, tmp))
  else:
    raise AssertionError(kind)
  return True


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  convert(options(fv))


def convert(o: FromPytorchOptions) -> None:
  """Converts what `o` names into `o.out` (see the module docstring)."""
  jobs = plan(o)
  if not jobs and o.recipe:
    out = Path(o.out)
    if not out.is_dir():
      raise app.UsageError(f"--out {out}: no such checkpoint folder to record --recipe {o.recipe} in")
    write_spec(out, o.recipe)
    print(f"wrote {out / 'run_spec.json'} ({o.recipe})")
    return
  if not jobs:
    raise app.UsageError("nothing to convert: give --sd15, --avsyncd, --unet, --vae, --text_encoder, "
                         "--tokenizer, --imagebind or --audio_encoder")
  check_inputs(o)
  _audio_config(o)  # a bad --audio_config fails here, before anything is written
  out = Path(o.out)
  created = not out.exists()
  written = []
  try:
    for name, kind, source in tqdm(jobs, desc="converting", unit="component"):
      logging.info("%s <- %s (%s)", name, source, kind)
      if convert_one(name, kind, source, out, o):
        written.append(name)
  finally:
    if created and out.is_dir() and not any(out.iterdir()):
      out.rmdir()  # a failed first component leaves no empty --out behind
  if not written:
    raise app.UsageError("nothing was converted (no text encodings were given or computable)")
  write_spec(out, o.recipe)
  written.append("run_spec.json")
  print(f"wrote {', '.join(written)} to {out}")


def write_spec(out: Path, recipe: str | None) -> None:
  """CKPT/run_spec.json: the recipe's run spec with this folder's VAE and class prompts (and, without
  --recipe, the frame size it recorded before)."""
  import dataclasses
  from asva_jax import run_spec
  spec = run_spec.checkpoint_recipe(out, recipe or "avsync15")
  if not recipe and (out / run_spec.SPEC_FILE).is_file():
    spec = dataclasses.replace(spec, frame_size=run_spec.read_checkpoint_spec(out).frame_size)
  run_spec.write_checkpoint_spec(out, spec)


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
