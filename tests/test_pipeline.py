"""The sampling pipeline end to end on a tiny checkpoint: shapes, 6 fps with the audio, seeds,
long audio, and the errors a user can cause."""

import numpy as np
import pytest

from asva_jax.pipeline import Clip, InputError, UnknownCategoryError, inputs, load_models, long_audio, sample
from asva_jax.checkpoint import CheckpointError
from tests.sampling_checkpoint import PROMPTS, SIZE, media, tiny_checkpoint

OPTIONS = dict(num_inference_steps=2, audio_guidance=4.0)


@pytest.fixture(scope="module")
def models():
  return load_models(tiny_checkpoint())


def clip(seconds=2.0, start=0.0):
  files = media(seconds)
  image = inputs.prepare_image(inputs.load_image(files["image"]), SIZE)
  audio, _ = inputs.load_audio_track(files["audio"])
  return Clip(image, inputs.window(audio, start), PROMPTS[0]), audio


def test_sample_is_reproducible_per_seed(models):
  c, _ = clip()
  a = sample(models, [c], seeds=0, **OPTIONS)
  assert a.shape == (1, 12) + SIZE + (3,) and a.dtype == np.uint8
  assert np.array_equal(a, sample(models, [c], seeds=0, **OPTIONS))
  assert not np.array_equal(a, sample(models, [c], seeds=1, **OPTIONS))


def test_given_latents_replace_the_seeded_noise(models):
  c, _ = clip()
  frames, latents = sample(models, [c], seeds=0, return_latents=True, **OPTIONS)
  noise = np.random.default_rng(0).standard_normal((1, 11) + latents.shape[2:]).astype(np.float32)
  b = sample(models, [c], seeds=0, latents=noise, **OPTIONS)
  assert b.shape == frames.shape and not np.array_equal(b, frames)
  with pytest.raises(InputError, match="latents"):
    sample(models, [c], latents=noise[:, :3], **OPTIONS)


@pytest.mark.parametrize("mode", long_audio.MODES)
def test_long_audio_covers_the_whole_track(models, mode):
  c, audio = clip(5.0)
  video, starts = long_audio.animate(models, c.image, audio, c.prompt, mode=mode, batch_size=1,
                                     progress=False, **OPTIONS)
  assert len(video) == 30 and video.shape[1:] == SIZE + (3,)
  assert len(starts) == (3 if mode == "anchored" else 3)
  seams = long_audio.seam_indices(starts, mode, 12, len(video))
  assert seams == ([12, 24] if mode == "anchored" else [11, 22])
  assert long_audio.seam_smoothness(video, seams)["inside"] > 0
  assert len(long_audio.drift(video, c.image, seams)) == len(starts)


def test_window_starts():
  assert long_audio.window_starts(2.0, "anchored", 12) == [0.0]
  assert long_audio.window_starts(20.0, "anchored", 12) == [2.0 * k for k in range(10)]
  assert len(long_audio.window_starts(20.0, "continuous", 12)) == 11


def test_bad_inputs(models, tmp_path):
  (tmp_path / "bad.png").write_bytes(b"not an image")
  (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
  with pytest.raises(InputError, match="no such image"):
    inputs.load_image(tmp_path / "missing.png")
  with pytest.raises(InputError, match="corrupt image"):
    inputs.load_image(tmp_path / "bad.png")
  with pytest.raises(InputError, match="bad.wav"):
    inputs.load_audio_track(tmp_path / "bad.wav")
  short, _ = inputs.load_audio_track(media(1.0)["audio"])
  with pytest.raises(InputError, match="at least 2 s"):
    inputs.check_length(short, "short.m4a")
  with pytest.raises(UnknownCategoryError, match="'unicorns singing'.*'dog barking'"):
    sample(models, [Clip(np.zeros(SIZE + (3,), np.uint8), np.zeros(32000, np.float32), "unicorns singing")],
           **OPTIONS)
  with pytest.raises(CheckpointError, match="no such"):
    load_models(tmp_path / "nowhere")
  with pytest.raises(CheckpointError, match="missing unet/"):
    load_models(tmp_path)
  corrupt = tmp_path / "corrupt"
  for component in ("unet", "vae", "audio_encoder"):
    (corrupt / component).mkdir(parents=True)
    (corrupt / component / "config.json").write_text("{")
  with pytest.raises(CheckpointError, match="not valid JSON"):
    load_models(corrupt)


def test_text_encoding_prefers_the_stored_class_encoding():
  from asva_jax.pipeline import Models
  from asva_jax.pipeline.models import text_encoding
  stored = {"": np.zeros((77, 4), np.float32), "cats": np.ones((77, 4), np.float32)}
  asked = []

  def encode(prompts):
    asked.extend(prompts)
    return np.full((len(prompts), 77, 4), 2.0, np.float32)

  from asva_jax import run_spec
  spec = run_spec.recipe(class_prompts=["cats"])
  models = Models(unet=None, autoencoder=None, audio_encoder=None, text_encodings=stored, spec=spec,
                  encode_prompts=encode)
  assert text_encoding(models, "cats").max() == 1 and text_encoding(models, "").max() == 0 and not asked
  assert text_encoding(models, "lions roaring").min() == 2 and asked == ["lions roaring"]
  with pytest.raises(UnknownCategoryError, match="its classes: 'cats'"):
    text_encoding(Models(None, None, None, stored, spec), "dogs")


def test_training_workdir_is_a_model_source(tmp_path):
  """A workdir (asva_jax.workdir) whose frozen base is the tiny checkpoint, before any step, written
  before the run spec existed (run.json version 1): its spec is derived (`workdir.legacy_spec`)."""
  import json
  import shutil
  from asva_jax.training.defaults import base_config
  ckpt = tiny_checkpoint()
  (tmp_path / "run.json").write_text(json.dumps({
      "format": "asva-jax training workdir", "version": 1, "checkpoint": str(ckpt), "autoencoder": "vae",
      "space_to_depth_factor": 4, "scaling_factor": 0.18215}))
  config = base_config()
  del config.diffusion.prediction_type  # version-1 configs before v-prediction had none
  config.data.synthetic.enabled, config.data.synthetic.size = True, SIZE
  (tmp_path / "config.json").write_text(config.to_json())
  shutil.copytree(ckpt / "text_encodings", tmp_path / "text_encodings")
  models = load_models(tmp_path)
  assert models.step == 0
  assert models.spec == load_models(ckpt).spec  # the recipe's, at the synthetic size, with its prompts
  assert models.spec.frame_size == SIZE and models.spec.class_prompts == tuple(sorted(PROMPTS))
  c, _ = clip()
  assert np.array_equal(sample(models, [c], **OPTIONS), sample(load_models(ckpt), [c], **OPTIONS))
