"""A training run's side of its folder (`asva_jax.run_folder`): what the trainer records there,
the prompt encodings it trains with, and its trained models loaded back (`load_trained`,
reached through `asva_jax.pipeline.load_models`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from asva_jax import run_folder, run_spec
from asva_jax.component_folders import CheckpointError
from asva_jax.constants import NULL_PROMPT
from asva_jax.errors import AsvaError
from asva_jax.models.bundle import Models, autoencoder_factor
from asva_jax.models.prompts import PromptEncoder, clip_encoder
from asva_jax.storage import as_path
from asva_jax.training import checkpoints
from asva_jax.training.build import Trainee
from asva_jax.training.ema import has_ema
from asva_jax.training.state import split_model


def record_run(workdir, config, built, *, frame_size, primary: bool = True) -> None:
  """`run_folder.write_run` for a built model (`training.build.Built`) trained on frames of `frame_size`."""
  model = built.model
  modules = {"unet": model.unet, "audio_encoder": model.audio_encoder, "vae": model.autoencoder}
  components = {name: (modules[name], built.configs[name]) for name in modules if name in built.configs}
  spec = run_spec.from_config(config, frame_size=frame_size,
                              autoencoder_factor=autoencoder_factor(model.autoencoder))
  run_folder.write_run(workdir, config, components, spec, primary=primary)


def prompt_encoder(config, dim: int) -> PromptEncoder:
  """The text encodings a run trains with: `config.model.checkpoint`'s stored ones, its CLIP text
  encoder for other prompts when it has one; from scratch, stand-ins from (seed, prompt).
  Asks for the null text at once, so a checkpoint without it fails before training."""
  ckpt = config.model.checkpoint
  if not ckpt:
    encoder = PromptEncoder({}, stand_in=(int(config.seed), dim))
  else:
    from asva_jax.text_encodings import load_text_encodings
    folder = as_path(ckpt)
    stored = load_text_encodings(ckpt) if (folder / "text_encodings").is_dir() else {}
    encode = clip_encoder(ckpt) if (folder / "text_encoder").is_dir() else None
    encoder = PromptEncoder(stored, encode=encode, unknown=lambda prompt: AsvaError(
        f"--config.model.checkpoint={ckpt}: no text encoding for prompt {prompt!r} and no text_encoder/ to "
        f"compute one; convert the class encodings (python -m convert.from_pytorch --text-encodings ...) "
        f"or the CLIP text encoder"))
  encoder[NULL_PROMPT]
  return encoder


def load_trained(path, step: int | None = None, *, dtype=jnp.float32, raw_weights: bool = False) -> Models:
  """The run's models with the trained parameters of `step` (default: the latest) merged in, as
  a `Models` bundle with the run spec and the training config.

  A run with EMA weights (`train.ema_decay` > 0) gives them, unless `raw_weights`; which ones is
  printed. `dtype` is the compute dtype; parameters stay float32. Step 0 (or no checkpoint yet)
  gives the initial models.
  """
  from asva_jax.models.imagebind_audio import load_audio_encoder
  from asva_jax.models.space_to_depth import SpaceToDepth
  from asva_jax.models.unet_3d import load_unet
  from asva_jax.models.vae import load_vae
  from asva_jax.text_encodings import load_text_encodings

  spec = run_spec.read_workdir_spec(path)
  config = run_folder.read_config(path)
  base = run_folder.base_folder(path)
  unet = load_unet(base, dtype=dtype)
  audio = load_audio_encoder(base, dtype=dtype)
  if spec.autoencoder == "space_to_depth":
    autoencoder = SpaceToDepth(spec.autoencoder_factor)
  else:
    autoencoder = load_vae(base, dtype=dtype)
  model = Trainee(unet, autoencoder, audio)
  available = run_folder.steps(path)
  latest = step is None
  if latest:
    step = available[-1] if available else 0
  if step:
    if step not in available:
      raise CheckpointError(f"{path}: no checkpoint for step {step} (available: {available or 'none'})")
    manager = checkpoints.make_manager(path, read_only=True)
    cfg = ml_collections.ConfigDict(config.to_dict())
    cfg.precision.frozen = "float32"
    _, params, _ = split_model(model, cfg)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), params)
    # The latest step falls back past damaged ones, as training does; an asked-for step does not.
    older = [s for s in reversed(available) if s <= step]
    item = weights_item(config, raw_weights)
    try:
      step, restored = checkpoints.restore_params(
          manager, older if latest else [step], target, item=item,
          hint=f"choose another step of {path} with --step (available: {available})")
    finally:
      manager.close()
    nnx.update(model, restored)
    if has_ema(config.train):
      print(f"{path}: step {step}, " + ("EMA weights (decay " f"{float(config.train.ema_decay):g}; "
                                        "--raw_weights for the raw ones)" if item == "ema" else
                                        "raw weights (not the EMA)"), flush=True)
  encodings = {}
  for folder in (base / "text_encodings", as_path(path) / "text_encodings"):  # the run's own win
    if folder.is_dir():
      encodings.update(load_text_encodings(folder))
  return Models(unet=model.unet, autoencoder=model.autoencoder, audio_encoder=model.audio_encoder,
                text_encodings=encodings, spec=spec, config=config, step=int(step), source=str(path))


def weights_item(config, raw_weights: bool) -> str:
  """The checkpoint item a run's models are loaded from: "ema" when it keeps EMA weights and they
  are not declined, else "params"."""
  return "ema" if config is not None and has_ema(config.train) and not raw_weights else "params"
