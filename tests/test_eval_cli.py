"""`python -m asva_jax.eval` on a tiny case (fixture networks, synthetic mp4s) and its bad inputs."""

import json
import shutil

import numpy as np
import pytest

from asva_jax.errors import AsvaError
from asva_jax.eval import metrics
from asva_jax.eval import evaluate as eval_run
from asva_jax.eval.clip_reader import MetricClip, ReferenceVideo
from asva_jax.eval.evaluate import METRICS, clips_path, evaluate, load_detectors
from asva_jax.media.mp4 import write_mp4
from tests.eval_fixtures import DATA, models_dir

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
  """`python -m asva_jax.eval ARGS` in this process (its entry point, `commands.eval.run`):
  (exit status, stderr)."""
  from asva_jax.commands import eval as eval_command
  capsys.readouterr()
  try:
    eval_command.run(["python -m asva_jax.eval", *args])
    code = 0
  except SystemExit as e:
    code = 0 if e.code is None else e.code  # absl's app.run exits with None on success
  return code, capsys.readouterr().err


def test_evaluate_tiny_case(case):
  out = case / "out" / "metrics.json"
  result = evaluate(case / "generated", case / "reference", models_dir(), out, METRICS, num_clips=2,
                    batch_size=3, progress=False, detectors=load_detectors(models_dir(), METRICS))
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
  from asva_jax.eval.clip_reader import open_references
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


# --- the original's numbers through the command line ------------------------------------------

ORIGINAL = DATA / "metrics"  # eval.py's end-to-end run: its clips (io.npz) and its results.json
PER_CLIP = ("IA", "RelSync", "AlignSync")  # eval.py's per-clip "IT" field holds IA (docs/reference.md §9.5)


def rel(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture
def original_clips(monkeypatch, tmp_path):
  """The fixture's decoded clips (uint8 frames, log-mels) behind the command's two readers, so the
  command runs on exactly what eval.py scored; --generated holds placeholder files with the clip names."""
  io = np.load(ORIGINAL / "io.npz")
  frames = lambda v: np.round(np.transpose(v, (0, 1, 3, 4, 2)) * 255).astype(np.uint8)  # noqa: E731
  names = [str(n) for n in io["gen_clip_names"]]
  generated = {n: MetricClip(frames(io["gen_video"])[i], io["gen_mel"][i, 0]) for i, n in enumerate(names)}
  videos = [str(v) for v in io["gt_names_sorted"]]
  per_video = len(names) // len(videos)
  gt = frames(io["gt_video"])
  reference = {v: [MetricClip(gt[j * per_video + k], io["gt_mel"][j * per_video + k, 0]) for k in range(per_video)]
               for j, v in enumerate(videos)}

  listed = {v: ReferenceVideo(v, str(c), j) for j, (v, c) in enumerate(zip(videos, io["categories_as_zipped"]))}

  class References:
    videos = listed

    def clips(self, name, num_clips, size):
      assert num_clips == per_video and tuple(size) == gt.shape[2:4]
      yield from reference[name]

  folder = tmp_path / "generated"
  monkeypatch.setattr(eval_run, "open_references", lambda *args: References())
  monkeypatch.setattr(eval_run, "read_generated", lambda path: generated[path.relative_to(folder).as_posix()])

  def make(covered):
    for name in names:
      if any(name.startswith(v.removesuffix(".mp4")) for v in covered):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()
    return folder
  return make, videos


def test_cli_reproduces_the_originals_metrics_with_a_padded_last_batch(original_clips, tmp_path, capsys):
  """4 clips in batches of 3: the last batch is padded to 3, and the padding leaves no trace."""
  make, videos = original_clips
  expected = json.loads((ORIGINAL / "results.json").read_text())
  out = tmp_path / "m.json"
  code, err = run_cli(capsys, "--generated", str(make(videos)), "--reference", "unused", "--models",
                      str(models_dir()), "--num_clips=2", "--batch_size=3", "--out", str(out))
  assert code == 0, err
  summary = json.loads(out.read_text())
  assert summary["num_clips"] == 4
  for key in ("FID", "FVD", "IA_mean", "IA_std", "IT_mean", "IT_std", "RelSync_mean", "RelSync_std",
              "AlignSync_mean", "AlignSync_std"):
    assert rel(summary[key], expected[key]) < 1e-5, (key, summary[key], expected[key])
  records = [json.loads(line) for line in clips_path(out).read_text().splitlines()]
  assert [r["clip"] for r in records] == list(expected["instance_metrics"])
  for key in PER_CLIP:
    assert rel([r[key] for r in records], [expected["instance_metrics"][r["clip"]][key] for r in records]) < 1e-5


def test_cli_partial_scores_the_covered_videos_only(original_clips, tmp_path, capsys):
  make, videos = original_clips
  instance = json.loads((ORIGINAL / "results.json").read_text())["instance_metrics"]
  out = tmp_path / "m.json"
  code, err = run_cli(capsys, "--generated", str(make(videos[1:])), "--reference", "unused", "--models",
                      str(models_dir()), "--num_clips=2", "--batch_size=3", "--partial",
                      "--metrics=ia,relsync,alignsync", "--out", str(out))
  assert code == 0, err
  summary = json.loads(out.read_text())
  assert summary["num_videos"] == 1 and summary["num_clips"] == 2
  records = [json.loads(line) for line in clips_path(out).read_text().splitlines()]
  covered = [n for n in instance if n.startswith(videos[1].removesuffix(".mp4"))]
  assert [r["clip"] for r in records] == covered
  for key in PER_CLIP:
    values = [instance[n][key] for n in covered]
    assert rel([r[key] for r in records], values) < 1e-5, key
    assert rel(summary[f"{key}_mean"], np.mean(values)) < 1e-5, key
    assert rel(summary[f"{key}_std"], np.std(values, ddof=1)) < 1e-4, key  # eval.py's std (n - 1)
