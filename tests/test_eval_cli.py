"""`python -m asva_jax.eval` on a tiny case (fixture networks, synthetic mp4s) and its bad inputs."""

import json
import shutil

import numpy as np
import pytest

from asva_jax.errors import AsvaError
from asva_jax.eval import metrics
from asva_jax.eval.run import METRICS, clips_path, evaluate, load_detectors
from data_prep.mp4 import write_mp4
from tests.cli_modules import cli_module
from tests.eval_fixtures import models_dir

VIDEOS = {"dog_barking/vid_000.mp4": 220.0, "playing_violin__fiddle/vid_001.mp4": 660.0}
H, W = 24, 32  # the size of the metrics fixture's clips (one compilation for both tests)


def av(rng, seconds: float, fps: int, tone: float):
  frames = rng.integers(0, 256, (int(seconds * fps), H, W, 3), dtype=np.uint8)
  t = np.arange(int(seconds * 16000)) / 16000
  return frames, (0.3 * np.sin(2 * np.pi * tone * t))[None].astype(np.float32)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
  """Reference videos (3 s, 12 fps) and their 2 generated clips each (2 s, 6 fps), as the sampler names them."""
  root = tmp_path_factory.mktemp("eval_case")
  rng = np.random.default_rng(0)
  for name, tone in VIDEOS.items():
    frames, audio = av(rng, 3.0, 12, tone)
    write_mp4(root / "reference" / name, frames, 12, audio, 16000)
    for k in range(2):
      frames, audio = av(rng, 2.0, 6, tone * (1 + k))
      write_mp4(root / "generated" / metrics.generated_clip_name(name, k), frames, 6, audio, 16000)
  return root


def run_cli(capsys, *args) -> tuple[int, str]:
  """`python -m asva_jax.eval ARGS` in this process (through `command.run`, as the module's entry
  point): (exit status, stderr)."""
  from asva_jax import command
  capsys.readouterr()
  try:
    with cli_module("asva_jax.eval.__main__") as cli:
      command.run(cli.main, ["python -m asva_jax.eval", *args])
    code = 0
  except SystemExit as e:
    code = e.code
  return code, capsys.readouterr().err


def test_evaluate_tiny_case(case):
  out = case / "out" / "metrics.json"
  result = evaluate(case / "generated", case / "reference", models_dir(), out, METRICS, num_clips=2,
                    batch_size=4, progress=False, detectors=load_detectors(models_dir(), METRICS))
  summary = json.loads(out.read_text())
  assert summary == json.loads(json.dumps(result))
  assert summary["num_videos"] == 2 and summary["num_clips"] == 4
  for key in ("FID", "FVD", "IA_mean", "IA_std", "IT_mean", "IT_std", "RelSync_mean", "RelSync_std",
              "AlignSync_mean", "AlignSync_std"):
    assert np.isfinite(summary[key]), key
  assert 0 < summary["RelSync_mean"] < 1 and 0 < summary["AlignSync_mean"] < 1
  records = [json.loads(line) for line in clips_path(out).read_text().splitlines()]
  assert [r["clip"] for r in records] == ["dog_barking/vid_000_clip-00.mp4", "dog_barking/vid_000_clip-01.mp4",
                                          "playing_violin__fiddle/vid_001_clip-00.mp4",
                                          "playing_violin__fiddle/vid_001_clip-01.mp4"]
  assert [r["category"] for r in records] == ["dog_barking"] * 2 + ["playing_violin__fiddle"] * 2
  relsync = metrics.relsync([r["avsync_score"] for r in records], [r["reference_avsync_score"] for r in records])
  np.testing.assert_allclose([r["RelSync"] for r in records], relsync, rtol=1e-12)
  for key in ("IA", "IT", "RelSync", "AlignSync"):
    assert metrics.mean_std([r[key] for r in records]) == pytest.approx(
        (summary[f"{key}_mean"], summary[f"{key}_std"]), rel=1e-12)
  assert not list(out.parent.glob("*.tmp"))


def test_cli_missing_model_file(case, tmp_path, capsys):
  """Through the command line: one line on stderr, exit 2, nothing written."""
  models = tmp_path / "models"
  shutil.copytree(models_dir(), models, symlinks=True)
  (models / "imagebind.safetensors").unlink()
  out = tmp_path / "m.json"
  code, err = run_cli(capsys, "--generated", str(case / "generated"), "--reference", str(case / "reference"),
                      "--models", str(models), "--metrics=ia,relsync", "--num_clips=2", "--out", str(out))
  assert code == 2 and "Traceback" not in err, err
  assert err.strip().splitlines() == [
      f"error: --models {models}: no imagebind file (looked for imagebind_huge.pth, imagebind.safetensors); "
      f"see docs/evaluation.md for the folder layout"]
  assert not out.exists() and not clips_path(out).exists()


def test_bad_flags_and_stray_clip(case, tmp_path):
  with pytest.raises(AsvaError, match="--metrics: unknown psnr"):
    evaluate(case / "generated", case / "reference", models_dir(), tmp_path / "m.json", "fid,psnr")
  stray = tmp_path / "generated"
  shutil.copytree(case / "generated", stray)
  shutil.copy(stray / "dog_barking" / "vid_000_clip-00.mp4", stray / "dog_barking" / "vid_999_clip-00.mp4")
  with pytest.raises(AsvaError, match="vid_999_clip-00.mp4: no reference video dog_barking/vid_999.mp4"):
    evaluate(stray, case / "reference", models_dir(), tmp_path / "m.json", "fid", num_clips=2)
  with pytest.raises(AsvaError, match="no such folder"):
    evaluate(case / "generated", case / "reference", tmp_path / "nothing", tmp_path / "m.json", "fid",
             num_clips=2)


def test_pairing_errors(case, tmp_path):
  gen = tmp_path / "generated"
  shutil.copytree(case / "generated", gen)
  (gen / "playing_violin__fiddle" / "vid_001_clip-01.mp4").unlink()
  with pytest.raises(AsvaError, match="vid_001.mp4: missing clip"):
    evaluate(gen, case / "reference", models_dir(), tmp_path / "m.json", "fid", num_clips=2)
  shutil.rmtree(gen / "playing_violin__fiddle")
  with pytest.raises(AsvaError, match="1 reference video.*--partial"):
    evaluate(gen, case / "reference", models_dir(), tmp_path / "m.json", "fid", num_clips=2)
  (gen / "dog_barking" / "vid_000_clip-00.mp4").rename(gen / "dog_barking" / "sample.mp4")
  with pytest.raises(AsvaError, match="sample.mp4: not named like a generated clip"):
    evaluate(gen, case / "reference", models_dir(), tmp_path / "m.json", "fid", num_clips=2)


def test_shard_reference(tmp_path_factory, tmp_path):
  """--reference as shards from data_prep.build (the session's synthetic dataset, 3 test videos):
  the same 3 uniform clips per video as the evaluation loader, resized to the generated size."""
  from asva_jax.eval.clips import open_references
  from tests.data_pipeline_fixtures import built_shards
  shards = built_shards(tmp_path_factory)
  refs = open_references(shards)
  assert len(refs.videos) == 3
  rng = np.random.default_rng(1)
  for name in refs.videos:
    for k in range(3):
      frames, audio = av(rng, 2.0, 6, 300.0 + 100 * k)
      write_mp4(tmp_path / "generated" / metrics.generated_clip_name(name, k), frames, 6, audio, 16000)
  out = tmp_path / "metrics.json"
  result = evaluate(tmp_path / "generated", shards, models_dir(), out, "fid,relsync", batch_size=4,
                    progress=False, detectors=load_detectors(models_dir(), METRICS))
  assert result["num_videos"] == 3 and result["num_clips"] == 9 and np.isfinite(result["FID"])
  records = [json.loads(line) for line in clips_path(out).read_text().splitlines()]
  assert [r["video"] for r in records] == [v for v in sorted(refs.videos) for _ in range(3)]
  assert [r["category"] for r in records] == [refs.videos[r["video"]].category for r in records]
  assert all(r["category"] == r["video"].split("/")[0] for r in records)
  # Reference clip k is the evaluation loader's clip k of that video.
  from asva_jax.data import eval_loader
  batch = next(iter(eval_loader(shards, 3)))
  name = batch["key"][0].decode()
  clips = list(refs.clips(name, 3, (48, 64)))
  for k in range(3):
    np.testing.assert_array_equal(clips[k].video, batch["video"][k])
    np.testing.assert_array_equal(clips[k].mel, batch["mel"][k])
