"""The run spec (asva_jax.run_spec): what training and conversion record, and that every consumer
samples with it. References: diffusers' schedulers and SD1.5's scheduler config, the frame size
of the shards a run trained on."""

import json
import shutil

import numpy as np
import pytest

from asva_jax import run_spec
from tests.reference_models import SD15_SCHEDULER
from tests.sampling_checkpoint import PROMPTS, media, tiny_checkpoint

# A TheGreatestHits-shaped run (frames twice as wide as high) with v-prediction on another schedule.
TGH_SIZE = (8, 16)
SCHEDULE = dict(num_train_timesteps=500, beta_start=0.001, beta_end=0.02)


def diffusers_scheduler(cls_name: str, spec_config: dict, steps: int):
  import diffusers
  scheduler = getattr(diffusers, cls_name).from_config(spec_config)
  scheduler.set_timesteps(steps)
  return scheduler


def test_recipe_is_sd15s_scheduler_and_round_trips():
  spec = run_spec.recipe("thegreatesthits", class_prompts=["hitting with a stick", ""])
  assert spec.frame_size == (128, 256) and spec.class_prompts == ("hitting with a stick",)
  assert spec.prediction_type == "epsilon" and (spec.num_frames, spec.fps) == (12, 6)
  config = spec.scheduler_config()
  assert {k: config[k] for k in SD15_SCHEDULER if k in config} == {
      k: v for k, v in SD15_SCHEDULER.items() if k in config}
  ddpm = diffusers_scheduler("DDPMScheduler", SD15_SCHEDULER, 10)
  np.testing.assert_allclose(spec.alphas_cumprod(), ddpm.alphas_cumprod.numpy(), rtol=2e-6)
  stored = json.loads(json.dumps(spec.to_json()))
  assert run_spec.RunSpec.from_json(stored, "x") == spec


@pytest.mark.parametrize("change, expect", [
    ({"version": 2}, "version 2"),
    ({"prediction_type": "sample"}, "prediction_type 'sample'"),
    ({"frame_size": [30, 30]}, "frame_size 30x30"),
    ({"beta_schedule": "linear"}, "beta_schedule 'linear'"),
    ({"fps": None}, "malformed"),
    ({"num_frames": "DROP"}, "missing num_frames"),
])
def test_a_bad_spec_is_one_error_naming_the_file(tmp_path, change, expect):
  data = run_spec.recipe().to_json()
  for key, value in change.items():
    if value == "DROP":
      del data[key]
    else:
      data[key] = value
  (tmp_path / run_spec.SPEC_FILE).write_text(json.dumps(data))
  with pytest.raises(run_spec.RunSpecError, match=expect) as e:
    run_spec.read(tmp_path)
  assert str(tmp_path / run_spec.SPEC_FILE) in str(e.value)


def test_converted_folder_spec_is_the_recipe(tmp_path):
  """convert.from_pytorch records the recipe (--recipe picks the frame size); a folder converted
  before the spec existed reads as the AVSync15 recipe, with its VAE's factor and its prompts."""
  ckpt = tmp_path / "ckpt"
  shutil.copytree(tiny_checkpoint(), ckpt)
  (ckpt / run_spec.SPEC_FILE).unlink()
  legacy = run_spec.read(ckpt)
  assert legacy.frame_size == (256, 256) and legacy.class_prompts == tuple(sorted(PROMPTS))
  assert legacy.autoencoder_factor == 4 and legacy.scaling_factor == pytest.approx(0.18215)  # tiny VAE: 3 levels
  from convert import from_pytorch
  with pytest.raises(SystemExit) as e:
    from_pytorch.run(["from_pytorch", f"--out={ckpt}", "--recipe=thegreatesthits"])
  assert not e.value.code
  spec = run_spec.read(ckpt)
  assert spec == run_spec.RunSpec.from_json({**legacy.to_json(), "frame_size": [128, 256]}, "x")


@pytest.fixture(scope="module")
def tgh_run(tmp_path_factory):
  """One training step on 8 x 16 shards, v-prediction, a 500-step schedule (tiny one-level model)."""
  from asva_jax.training.trainer import prepare_synthetic, train
  from tests.training_fixtures import tiny_config, use_cache
  use_cache(tmp_path_factory)
  base = tmp_path_factory.mktemp("tgh")
  config = tiny_config("", **{"data.synthetic.num_classes": 2, "data.synthetic.videos_per_class": 2,
                              "data.synthetic.size": TGH_SIZE})
  shards = prepare_synthetic(config, base)
  config = tiny_config(shards, **{"data.synthetic.enabled": False, "train.num_steps": 1,
                                  "train.batch_size": 2, "diffusion.prediction_type": "v_prediction",
                                  **{f"diffusion.{k}": v for k, v in SCHEDULE.items()}})
  train(config, base / "run")
  return base / "run"


def test_trained_spec_records_the_run(tgh_run):
  spec = run_spec.read(tgh_run)
  assert spec.frame_size == TGH_SIZE and spec.prediction_type == "v_prediction"
  assert (spec.num_train_timesteps, spec.beta_start, spec.beta_end) == tuple(SCHEDULE.values())
  stored = json.loads((tgh_run / "text_encodings" / "config.json").read_text())["prompts"]
  assert spec.class_prompts == tuple(p for p in stored if p) and spec.class_prompts


@pytest.mark.parametrize("scheduler, reference", [("ddim", "DDIMScheduler"), ("pndm", "PNDMScheduler")])
def test_sampling_uses_the_runs_prediction_type_and_schedule(tgh_run, monkeypatch, scheduler, reference):
  """What `denoise` receives from `pipeline.sample`, against diffusers' schedulers on the run's schedule."""
  from asva_jax.pipeline import Clip, load_models, pipeline
  received = {}

  def spy(unet, latents, **kwargs):
    received.update(kwargs)
    return latents

  monkeypatch.setattr(pipeline, "denoise", spy)
  models = load_models(tgh_run)
  clip = Clip(np.zeros(TGH_SIZE + (3,), np.uint8), np.zeros(32000, np.float32), models.spec.class_prompts[0])
  pipeline.sample(models, [clip], num_inference_steps=5, scheduler=scheduler)
  assert received["prediction_type"] == "v_prediction"
  config = {**SD15_SCHEDULER, **SCHEDULE, "prediction_type": "v_prediction"}
  ref = diffusers_scheduler(reference, config, 5)
  np.testing.assert_allclose(np.asarray(received["alphas_cumprod"]), ref.alphas_cumprod.numpy(), rtol=2e-6)
  plan = received["scheduler"]
  expected = ref.timesteps.numpy()
  assert plan.name == scheduler and np.array_equal(np.asarray(plan.timesteps), expected)


def test_exported_scheduler_is_the_runs(tgh_run, tmp_path):
  import diffusers
  from convert import to_pytorch
  to_pytorch.write_scheduler(tgh_run, run_spec.read(tgh_run), tmp_path)
  scheduler = diffusers.PNDMScheduler.from_pretrained(tmp_path / "scheduler")
  ref = diffusers.PNDMScheduler.from_config({**SD15_SCHEDULER, **SCHEDULE, "prediction_type": "v_prediction"})
  assert scheduler.config.prediction_type == "v_prediction"
  np.testing.assert_array_equal(scheduler.alphas_cumprod.numpy(), ref.alphas_cumprod.numpy())


def test_thegreatesthits_frame_size_end_to_end(tgh_run, tmp_path, capsys):
  """`python -m asva_jax.sample --ckpt WORKDIR` without --size samples at the shards' 8 x 16 (the
  frame size TheGreatestHits runs have at 128 x 256), not 256 x 256."""
  import av
  files = media()
  from asva_jax.commands import sample
  out = tmp_path / "o.mp4"
  with pytest.raises(SystemExit) as e:
    sample.run(["sample", f"--ckpt={tgh_run}", f"--image={files['image']}", f"--audio={files['audio']}",
                "--steps=2", "--batch_size=1", f"--category={run_spec.read(tgh_run).class_prompts[0]}",
                f"--out={out}"])
  assert not e.value.code, capsys.readouterr().err
  with av.open(str(out)) as c:
    frame = next(c.decode(video=0))
    assert (frame.height, frame.width) == TGH_SIZE
