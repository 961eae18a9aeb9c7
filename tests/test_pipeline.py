"""The sampling pipeline end to end on a tiny checkpoint: shapes, 6 fps with the audio, seeds,
long audio, and the errors a user can cause."""

import numpy as np
import pytest

from asva_jax.pipeline import Clip, InputError, UnknownCategoryError, inputs, load_models, long_audio, sample
from asva_jax.component_folders import CheckpointError
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


def test_sample_equals_the_reference_composition(models):
  """`sample` with given latents against the original's steps written out here (docs/reference.md
  §1.2, §4.6, §4.7, §7.5, §8.3) around the components: crop, resize, [-1, 1], posterior sample,
  scaling, ImageBind tokens of the window and of the all-zero mel, the class and null texts,
  `denoise`, unscaling, decoding, uint8 by truncation."""
  import jax
  import jax.numpy as jnp
  import torch
  import torch.nn.functional as TF

  from asva_jax import load_text_encodings
  from asva_jax.audio import waveform_to_mel
  from asva_jax.pipeline import denoise
  from asva_jax.pipeline.pipeline import sample as sample_fn
  files = media(5.0)
  raw = inputs.load_image(files["image"])
  track, _ = inputs.load_audio_track(files["audio"])
  assert raw.shape == (40, 48, 3)
  x = torch.from_numpy(raw[:, 4:44].copy()).permute(2, 0, 1)[None].float() / 255  # centre 40 x 40
  x = TF.interpolate(x, size=SIZE, mode="bilinear", align_corners=False, antialias=True)
  image = (x.clamp(0, 1) * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()  # to_pil_image truncates
  audio = track[24000:24000 + 32000]  # the 2 s from 1.5 s
  c = Clip(inputs.prepare_image(raw, SIZE), inputs.window(track, 1.5), PROMPTS[1])
  np.testing.assert_array_equal(c.image, image)
  np.testing.assert_array_equal(c.audio, audio)

  seed, vae, scale = 3, models.autoencoder, models.scaling_factor
  mean, logvar = vae.encode(jnp.asarray(image[None], jnp.float32) / 127.5 - 1.0)
  posterior_key = jax.random.split(jax.random.key(seed))[1]  # the documented seeding: (noise, posterior)
  z0 = (mean + jnp.exp(0.5 * logvar) * jax.random.normal(posterior_key, mean.shape[1:])) * scale
  noise = np.random.default_rng(1).standard_normal((1, 11) + mean.shape[1:]).astype(np.float32)
  tokens = models.audio_encoder(jnp.asarray(waveform_to_mel(audio))[None])
  null_tokens = models.audio_encoder(jnp.zeros((1, 128, 204), jnp.float32))
  columns = np.round(np.linspace(0, 17, 12)).astype(int)
  masks = np.zeros((12, 1 + 12 * 19), bool)
  masks[:, 0] = True  # CLS; then mel-major tokens 1 + 19·row + column, two time columns per frame
  for frame, col in enumerate(columns):
    for row in range(12):
      masks[frame, 1 + 19 * row + col:1 + 19 * row + col + 2] = True
  texts = load_text_encodings(tiny_checkpoint())
  latents = denoise(models.unet, jnp.concatenate([z0[:, None], jnp.asarray(noise)], axis=1),
                    text=jnp.asarray(texts[PROMPTS[1]])[None], audio=tokens, audio_mask=masks,
                    null_text=jnp.asarray(texts[""])[None], null_audio=null_tokens, null_audio_mask=masks,
                    num_inference_steps=2, audio_guidance=4.0)
  decoded = vae.decode(latents[0] / scale)
  ref = np.asarray(jnp.clip(decoded / 2 + 0.5, 0.0, 1.0) * 255).astype(np.uint8)

  frames, ours = sample_fn(models, [c], seeds=seed, latents=noise, return_latents=True, **OPTIONS)
  ours, latents = np.asarray(ours[0]), np.asarray(latents[0])
  assert np.abs(ours - latents).max() < 1e-5 * np.abs(latents).max()  # eager vs compiled components
  assert np.abs(frames[0].astype(int) - ref).max() <= 1 and np.mean(frames[0] != ref) < 0.01


def record_windows(monkeypatch):
  """Every window long_audio samples, in order: its clip, the frame-0 latent handed over, its frames, latents."""
  windows = []

  def spy(fn):
    def run(models, clips, **kw):
      frames, latents = fn(models, clips, **kw)
      first = kw.get("first_latents")
      for k, c in enumerate(clips):
        windows.append(dict(clip=c, first=None if first is None else np.asarray(first)[k],
                            frames=frames[k], latents=np.asarray(latents[k])))
      return frames, latents
    return run

  monkeypatch.setattr(long_audio, "sample", spy(long_audio.sample))
  monkeypatch.setattr(long_audio, "sample_batched", spy(long_audio.sample_batched))
  return windows


LONG = {"anchored": [(0.0, False), (2.0, False), (23 / 6, True)],  # 5 s: two whole windows, a continued tail
        "continuous": [(0.0, False), (11 / 6, True), (22 / 6, True)]}


@pytest.mark.parametrize("mode", long_audio.MODES)
def test_long_audio_windows_and_handover(models, mode, monkeypatch):
  """5 s of audio: each window's audio offset, frame 0 of a continued window = the previous window's
  last latent, continuity of the decoded video at those seams, 30 frames in window order."""
  c, audio = clip(5.0)
  windows = record_windows(monkeypatch)
  video, starts = long_audio.animate(models, c.image, audio, c.prompt, mode=mode, batch_size=1,
                                     progress=False, **OPTIONS)
  expected = LONG[mode]
  assert len(windows) == len(expected) and np.allclose(starts, [s for s, _ in expected])
  for w, (start, continues) in zip(windows, expected):
    first = int(start * 16000)
    ref = np.zeros(32000, np.float32)
    ref[:len(audio[first:first + 32000])] = audio[first:first + 32000]
    np.testing.assert_array_equal(w["clip"].audio, ref)
    assert (w["first"] is not None) == continues
  pieces = [windows[0]["frames"]]
  for prev, w, (_, continues) in zip(windows, windows[1:], expected[1:]):
    pieces.append(w["frames"][1:] if continues else w["frames"])
    if continues:
      np.testing.assert_array_equal(w["first"], prev["latents"][-1])  # the last latent, not the first
      assert not np.array_equal(w["first"], prev["latents"][0])
      np.testing.assert_array_equal(w["latents"][0], prev["latents"][-1])
      assert np.abs(w["frames"][0].astype(int) - prev["frames"][-1]).max() <= 1  # no jump at the seam
  assert video.shape == (30,) + SIZE + (3,)
  np.testing.assert_array_equal(video, np.concatenate(pieces)[:30])
  seams = long_audio.seam_indices(starts, 12, len(video))
  assert seams == ([12, 24] if mode == "anchored" else [12, 23])
  assert long_audio.seam_smoothness(video, seams)["inside"] > 0
  assert len(long_audio.drift(video, c.image, seams)) == len(starts)


def test_audio_that_does_not_fill_a_window_does_not_end_on_a_reset(models):
  """2.2 s (anchored, the default): 13 frames, the 13th continues the first window instead of jumping
  back to the input image (frame 0, the image's reconstruction)."""
  c, audio = clip(2.2)
  video, starts = long_audio.animate(models, c.image, audio, c.prompt, batch_size=1, progress=False, **OPTIONS)
  assert len(video) == 13 and np.allclose(starts, [0.0, 11 / 6])
  assert not np.array_equal(video[12], video[0])


def test_long_audio_takes_the_frame_rate_of_the_run_spec(models, monkeypatch):
  """A run at 4 fps: 5 s of audio is 20 frames, the tail window starts at 11/4 s (anchored)."""
  import dataclasses
  at_4 = dataclasses.replace(models, spec=dataclasses.replace(models.spec, fps=4))
  c, audio = clip(5.0)
  windows = record_windows(monkeypatch)
  video, starts = long_audio.animate(at_4, c.image, audio, c.prompt, batch_size=1, progress=False, **OPTIONS)
  assert len(video) == 20 and starts == [0.0, 11 / 4]
  np.testing.assert_array_equal(windows[1]["clip"].audio, audio[44000:44000 + 32000])  # 2 s from 11/4 s


def test_window_plans():
  W = long_audio.Window
  assert long_audio.windows(2.0, "anchored", 12) == [W(0.0, False)]
  assert long_audio.windows(2.04, "continuous", 12) == [W(0.0, False)]  # 12 frames
  assert long_audio.windows(2.1, "anchored", 12) == [W(0.0, False), W(11 / 6, True)]  # 13 frames
  assert long_audio.window_starts(20.0, "anchored", 12) == [2.0 * k for k in range(10)]
  assert long_audio.window_starts(20.0, "continuous", 12) == [11 * k / 6 for k in range(11)]  # 12 + 10·11 >= 120
  assert long_audio.window_starts(21.0, "continuous", 12)[-1] == 11 * 11 / 6  # 126 frames: one more window
  assert long_audio.windows(21.0, "anchored", 12)[-1] == W(119 / 6, True)
  with pytest.raises(InputError, match="long-audio mode"):
    long_audio.windows(5.0, "looped", 12)


def test_sample_batched_pads_without_changing_any_clip(models):
  """3 clips in batches of 2 (the last padded), DDIM with eta > 0: each clip equals its batch-1 result
  with its own seed, so neither its batch, its position nor the padding changes it."""
  from asva_jax.pipeline import sample_batched
  _, audio = clip(5.0)
  image = clip()[0].image
  clips = [Clip(image, inputs.window(audio, s), p) for s, p in zip((0.0, 1.0, 3.0), PROMPTS + PROMPTS[:1])]
  options = dict(OPTIONS, scheduler="ddim", eta=1.0)
  batched = sample_batched(models, clips, batch_size=2, seeds=[4, 5, 6], progress=False, **options)
  assert batched.shape[0] == 3
  for c, s, got in zip(clips, (4, 5, 6), batched):
    alone = sample(models, [c], seeds=s, **options)[0]
    assert np.abs(got.astype(int) - alone).max() <= 1 and np.mean(got != alone) < 0.01
  assert not np.array_equal(batched[0], sample(models, [clips[0]], seeds=7, **options)[0])


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
  stored = {"": np.zeros((77, 4), np.float32), "cats": np.ones((77, 4), np.float32)}
  asked = []

  def encode(prompts):
    asked.extend(prompts)
    return np.full((len(prompts), 77, 4), 2.0, np.float32)

  from asva_jax import run_spec
  spec = run_spec.recipe(class_prompts=["cats"])
  models = Models(unet=None, autoencoder=None, audio_encoder=None, text_encodings=stored, spec=spec,
                  encode_prompts=encode)
  prompts = models.text_encodings  # the one prompt encoder (asva_jax.models.prompts)
  assert prompts["cats"].max() == 1 and prompts[""].max() == 0 and not asked
  assert prompts["lions roaring"].min() == 2 and asked == ["lions roaring"]
  assert prompts["lions roaring"].min() == 2 and asked == ["lions roaring"]  # encoded once
  assert sorted(prompts.used) == ["", "cats", "lions roaring"]
  with pytest.raises(UnknownCategoryError, match="its classes: 'cats'"):
    Models(None, None, None, stored, spec).text_encodings["dogs"]


def test_training_workdir_is_a_model_source(tmp_path):
  """A workdir (asva_jax.run_folder) whose frozen base is the tiny checkpoint, before any step, written
  before the run spec existed (run.json version 1): its spec is derived (`run_spec.legacy_spec`)."""
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
