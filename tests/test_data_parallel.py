"""Sampling and evaluation over 8 simulated CPU devices equal one device, clip by clip.

One subprocess (8 host-platform devices) samples 5 clips with `pipeline.sample_batched` at
batch size 1 (one call of 8: 5 clips and 3 of padding), DDIM with eta > 0 so
that the per-step noise keys matter, and runs `eval.evaluate` on the tiny eval case in batches
of 3 (one call of 8: 4 clips and padding). It also records where `denoise` got its batch and
where the UNet's weights lie. This process (one device) samples every clip alone (batch 1) and
evaluates the same case; the two must agree within float32 round-off.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from asva_jax.eval.evaluate import METRICS, clips_path, evaluate
from asva_jax.pipeline import Clip, inputs, load_models, sample
from tests.eval_fixtures import models_dir
from tests.sampling_checkpoint import PROMPTS, SIZE, media, tiny_checkpoint
from tests.test_eval_cli import case  # noqa: F401 - fixture
from tests.training_fixtures import ROOT, subprocess_env

DEVICES = 8
OPTIONS = dict(num_inference_steps=2, audio_guidance=4.0, scheduler="ddim", eta=1.0)
STARTS = (0.0, 0.75, 1.5, 2.25, 3.0)
SEEDS = tuple(range(3, 3 + len(STARTS)))


def clips() -> list[Clip]:
  audio, _ = inputs.load_audio_track(media(5.0)["audio"])
  image = inputs.prepare_image(inputs.load_image(media(2.0)["image"]), SIZE)
  return [Clip(image, inputs.window(audio, s), PROMPTS[k % 2]) for k, s in enumerate(STARTS)]


def report(ckpt: str, clips_npz: str, eval_root: str, models: str, out: str) -> None:
  """Runs in the 8-device subprocess; writes the videos, latents and placements to `out`."""
  import jax
  from flax import nnx

  from asva_jax.pipeline import pipeline
  assert jax.device_count() == DEVICES
  data = np.load(clips_npz)
  given = [Clip(im, a, str(p)) for im, a, p in zip(data["images"], data["audio"], data["prompts"])]
  models_ = load_models(ckpt)
  seen = {}
  real_denoise = pipeline.denoise

  def spy(unet, latents, **kw):  # where the sampling loop's batch and per-clip keys lie
    seen["latents"] = sorted((s.device.id, s.index[0].start or 0) for s in latents.addressable_shards)
    seen["key_shards"] = len({s.device.id for s in kw["key"].addressable_shards})
    return real_denoise(unet, latents, **kw)

  pipeline.denoise = spy
  frames, latents = pipeline.sample_batched(models_, given, batch_size=1, seeds=list(data["seeds"]),
                                            progress=False, return_latents=True, **OPTIONS)
  weight = max(jax.tree.leaves(nnx.state(models_.unet)), key=lambda w: w.size)
  weights = [(s.device.id, [list((i.start, i.stop)) for i in s.index]) for s in weight.addressable_shards]
  summary = evaluate(f"{eval_root}/generated", f"{eval_root}/reference", models, f"{out}.json", METRICS,
                     num_clips=2, batch_size=3, progress=False)
  np.savez(out, frames=frames, latents=latents)
  print(json.dumps({"denoise": seen, "weights": weights, "summary": summary}))


@pytest.fixture(scope="module")
def reported(case, tmp_path_factory):  # noqa: F811 - the fixture imported above
  root = tmp_path_factory.mktemp("data_parallel")
  given = clips()
  np.savez(root / "clips.npz", images=np.stack([c.image for c in given]), audio=np.stack([c.audio for c in given]),
           prompts=np.array([c.prompt for c in given]), seeds=np.array(SEEDS))
  args = [str(tiny_checkpoint()), str(root / "clips.npz"), str(case), str(models_dir()), str(root / "out")]
  env = subprocess_env(tmp_path_factory, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}")
  done = subprocess.run([sys.executable, "-c", "import sys; from tests.test_data_parallel import report; "
                         "report(*sys.argv[1:])", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-4000:]
  return json.loads(done.stdout.strip().splitlines()[-1]), np.load(root / "out.npz"), root / "out.json"


def test_sampling_splits_the_batch_and_replicates_the_weights(reported):
  placed, _, _ = reported
  assert placed["denoise"]["latents"] == [[d, d] for d in range(DEVICES)]  # one clip per device, padded
  assert placed["denoise"]["key_shards"] == DEVICES
  weights = placed["weights"]
  assert sorted(d for d, _ in weights) == list(range(DEVICES))
  assert all(index == weights[0][1] and all(start in (None, 0) for start, _ in index) for _, index in weights)


def test_every_clip_equals_its_batch_1_single_device_result(reported):
  _, out, _ = reported
  models = load_models(tiny_checkpoint())
  assert out["frames"].shape == (len(STARTS), 12) + SIZE + (3,)
  for k, (c, seed) in enumerate(zip(clips(), SEEDS)):
    frames, latents = sample(models, [c], seeds=seed, return_latents=True, **OPTIONS)
    np.testing.assert_allclose(out["latents"][k], np.asarray(latents[0]), rtol=1e-4, atol=1e-4)
    diff = np.abs(out["frames"][k].astype(int) - frames[0])
    assert diff.max() <= 1 and np.mean(diff > 0) < 0.01, k
  assert not np.allclose(out["latents"][0], out["latents"][1])  # the clips differ: the check can fail


def test_evaluation_metrics_equal_one_device(reported, case, tmp_path):  # noqa: F811
  _, _, out8 = reported
  one = tmp_path / "one.json"
  evaluate(case / "generated", case / "reference", models_dir(), one, METRICS, num_clips=2, batch_size=3,
           progress=False)
  eight, single = json.loads(out8.read_text()), json.loads(one.read_text())
  keys = [k for k, v in single.items() if isinstance(v, float)]
  assert len(keys) == 10
  for key in keys:
    assert eight[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
  rows8 = [json.loads(line) for line in clips_path(out8).read_text().splitlines()]
  rows1 = [json.loads(line) for line in clips_path(one).read_text().splitlines()]
  assert [r["clip"] for r in rows8] == [r["clip"] for r in rows1] and len(rows1) == 4
  for r8, r1 in zip(rows8, rows1):
    for key in ("IA", "IT", "RelSync", "AlignSync", "avsync_score", "reference_avsync_score"):
      assert r8[key] == pytest.approx(r1[key], rel=1e-5, abs=1e-6), (r1["clip"], key)

