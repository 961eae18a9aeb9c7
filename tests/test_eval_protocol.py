"""`python -m asva_jax.eval.protocol` end to end on the tiny synthetic dataset (3 test videos x 3 clips),
with a tiny checkpoint and the evaluation tests' reduced detectors: a run that fails in its second
sampler batch, then the rerun that continues it without touching the finished clips."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from asva_jax.eval.metrics import generated_clip_name
from tests.data_pipeline_fixtures import BUILD_SIZE, built_shards, synthetic_root
from tests.eval_fixtures import models_dir

REPO = Path(__file__).resolve().parent.parent
METRIC_KEYS = ("FID", "FVD", "IA_mean", "IA_std", "IT_mean", "IT_std", "RelSync_mean", "RelSync_std",
               "AlignSync_mean", "AlignSync_std")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  return built_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  """The sampling tests' tiny checkpoint at the shards' frame size, with encodings of the dataset's prompts."""
  from asva_jax import run_spec
  from convert.clip_text import save_text_encodings
  from tests.sampling_checkpoint import TEXT_DIM, write_checkpoint
  root = write_checkpoint(tmp_path_factory.mktemp("protocol") / "ck")
  prompts = json.loads((synthetic_root(tmp_path_factory) / "class_mapping.json").read_text()).values()
  rng = np.random.default_rng(0)
  save_text_encodings({p: rng.standard_normal((77, TEXT_DIM)).astype(np.float32) for p in ("", *prompts)},
                      root / "text_encodings")
  run_spec.write_checkpoint_spec(root, dataclasses.replace(run_spec.read_checkpoint_spec(root),
                                                           frame_size=BUILD_SIZE))
  return root


def run_cli(capsys, *args) -> tuple[int, str, str]:
  """The command's entry point in this process: (exit status, stdout, stderr)."""
  from asva_jax.commands import protocol
  capsys.readouterr()
  try:
    protocol.run(["python -m asva_jax.eval.protocol", *map(str, args)])
    code = 0
  except SystemExit as e:
    code = 0 if e.code is None else e.code
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def args(ckpt, shards, out, *extra):
  return ["--ckpt", ckpt, "--data", shards, "--models", models_dir(), "--out", out, "--steps", "2",
          "--scheduler", "ddim", "--batch_size", "4", "--eval_batch_size", "9", *extra]


def published_in_reference_md() -> dict:
  """docs/reference.md §9.4, the table of published results: {(dataset, guidance): {FVD, AlignSync}}."""
  text = (REPO / "docs" / "reference.md").read_text()
  section = text[text.index("### 9.4"):text.index("### 9.5")]
  names = {"AVSync15": "avsync15", "Landscapes": "landscapes", "TheGreatestHits": "thegreatesthits"}
  rows = {}
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip("|").split("|")]
    if cells[0] in names:
      guidance, fvd, align = ([float(v) for v in c.split("/")] for c in cells[1:4])
      for g, f, a in zip(guidance, fvd, align):
        rows[(names[cells[0]], g)] = {"FVD": f, "AlignSync": a}
  return rows


def test_published_values_are_those_of_the_reference():
  from asva_jax.eval.protocol import published
  assert published.VALUES == published_in_reference_md()
  assert published.published("avsync15", 4, 1) == {"FVD": 300.82, "AlignSync": 22.64}
  assert published.published("avsync15", 4, 2) is None and published.published(None, 4, 1) is None


def test_clip_inputs_are_the_reference_clips(shards):
  """Clip k of a test video is conditioned on frame 0 and the audio of the evaluation's reference clip k."""
  from asva_jax.audio.fbank import waveform_to_mel
  from asva_jax.commands.protocol import read_split, record_clip
  from asva_jax.data.clips import uniform_starts
  from asva_jax.eval.clip_reader import open_references
  source, videos, dataset = read_split(shards, "test")
  assert dataset == "avsync15" and len(videos) == 3
  references = open_references(shards)
  video = videos[1]
  for k, (start, ref) in enumerate(zip(uniform_starts(video["duration"], 3),
                                       references.clips(video["key"], 3, BUILD_SIZE))):
    clip = record_clip(source[1], float(start), BUILD_SIZE)
    np.testing.assert_array_equal(clip.image, ref.video[0])
    np.testing.assert_allclose(waveform_to_mel(clip.audio, 16000), ref.mel, rtol=0, atol=1e-6)
    assert clip.audio.shape == (32000,) and clip.prompt == video["prompt"]


def test_protocol_resumes_after_a_failure_and_reports(ckpt, shards, tmp_path, monkeypatch, capsys):
  from asva_jax.eval.protocol.report import COLUMNS
  from asva_jax.pipeline import pipeline
  real = pipeline.sample_batched
  calls = []

  def failing_second_batch(models, clips, **kwargs):
    calls.append(len(clips))
    if len(calls) == 2:
      raise RuntimeError("injected failure in the second batch")
    return real(models, clips, **kwargs)

  out = tmp_path / "run"
  monkeypatch.setattr(pipeline, "sample_batched", failing_second_batch)
  with pytest.raises(RuntimeError, match="injected failure"):
    run_cli(capsys, *args(ckpt, shards, out))
  done = sorted((out / "videos").rglob("*"))
  done = [p for p in done if p.is_file()]
  assert len(done) == 4 and all(p.name.endswith(".mp4") and ".tmp" not in p.name for p in done)
  first = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done}

  calls.clear()
  monkeypatch.setattr(pipeline, "sample_batched", lambda models, clips, **kw: calls.append(len(clips)) or
                      real(models, clips, **kw))
  code, stdout, err = run_cli(capsys, *args(ckpt, shards, out))
  assert code == 0, err
  assert calls == [4, 4]  # the 5 missing clips, in two (padded) batches; the 4 finished ones untouched
  assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first} == first

  from asva_jax.eval.clip_reader import open_references
  keys = sorted(open_references(shards).videos)
  expected = {generated_clip_name(key, k) for key in keys for k in range(3)}
  written = {p.relative_to(out / "videos").as_posix() for p in (out / "videos").rglob("*") if p.is_file()}
  assert written == expected
  assert not [p for p in out.rglob("*") if ".tmp" in p.name]

  metrics = json.loads((out / "metrics.json").read_text())
  report = json.loads((out / "protocol.json").read_text())
  assert metrics["num_videos"] == 3 and metrics["num_clips"] == 9
  assert all(np.isfinite(metrics[k]) for k in METRIC_KEYS)
  assert report["metrics"] == {k: metrics[k] for k in METRIC_KEYS}
  assert (report["clips_sampled"], report["clips_reused"]) == (5, 4)
  assert report["dataset"] == "avsync15" and report["published"] == published_in_reference_md()[("avsync15", 4.0)]
  assert report["settings"]["size"] == list(BUILD_SIZE) and report["settings"]["audio_guidance"] == 4.0
  assert set(report["seconds"]) == {"read split", "load checkpoint", "generate", "load detectors", "evaluate"}

  table = (out / "table.md").read_text().splitlines()
  assert len(table) == 4 and table[0].startswith("| | FID")
  ours = [c.strip() for c in table[2].strip("|").split("|")]
  assert ours[1:] == [f"{metrics[k] * scale:.2f}" for k, _, scale in COLUMNS]
  paper = [c.strip() for c in table[3].strip("|").split("|")]
  assert paper[1:] == ["—", "300.82", "—", "—", "—", "22.64"]
  assert "\n".join(table) in stdout and re.search(r"time per stage: read split [\d.]+ s", stdout)

  # A rerun with other settings refuses, and changes nothing.
  before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
  code, _, err = run_cli(capsys, *args(ckpt, shards, out, "--audio_guidance", "8"))
  assert code == 2 and "Traceback" not in err
  assert err.strip().splitlines() == [
      f"error: --out {out}: its clips were made with audio_guidance=4.0, this run has audio_guidance=8.0 "
      f"(1 setting(s) differ, see {out / 'protocol_settings.json'}); rerun with the same settings to "
      f"continue it, or choose another --out"]
  assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_bad_checkpoint_and_split(shards, tmp_path, capsys):
  """One line each, before anything is sampled or written."""
  (tmp_path / "notack").mkdir()
  code, _, err = run_cli(capsys, *args(tmp_path / "notack", shards, tmp_path / "o"))
  assert code == 2 and "Traceback" not in err
  assert len(err.strip().splitlines()) == 1 and f"{tmp_path / 'notack'}: not a sampling checkpoint" in err
  code, _, err = run_cli(capsys, *args(tmp_path / "notack", shards, tmp_path / "o", "--split", "val"))
  assert code == 2 and err.strip().splitlines() == [
      f"error: {Path(shards) / 'avsync15' / '1.0.0'}: split 'val' is not built or not finished (ready: test, train)"]
  assert not (tmp_path / "o").exists()


def test_a_rerun_without_step_keeps_the_recorded_step(shards, tmp_path, monkeypatch):
  """A workdir's clips continue with the step they were made with, not the workdir's newer latest."""
  from asva_jax.commands import protocol
  from asva_jax.eval.protocol.run_state import SETTINGS_FILE
  from asva_jax.pipeline import loading
  asked = []

  def load_models(path, step=None, **kwargs):
    asked.append(step)
    raise RuntimeError("stop after the step is chosen")

  monkeypatch.setattr(loading, "load_models", load_models)
  (tmp_path / "w").mkdir()
  out = tmp_path / "o"
  out.mkdir()
  (out / SETTINGS_FILE).write_text(json.dumps({"ckpt": str(tmp_path / "w"), "step": 7}))
  for ckpt, step in ((tmp_path / "w", None), (tmp_path / "w", 9)):
    with pytest.raises(RuntimeError, match="stop after"):
      protocol.run(["protocol", *map(str, args(ckpt, shards, out, *(["--step", step] if step else [])))])
  (tmp_path / "other").mkdir()
  with pytest.raises(RuntimeError, match="stop after"):
    protocol.run(["protocol", *map(str, args(tmp_path / "other", shards, out))])
  assert asked == [7, 9, None]


def test_hosts_share_the_clips(shards, tmp_path, monkeypatch):
  """Two processes' shares (contiguous parts of the whole clip list, whatever files exist) cover every
  clip once; the second process leaves the first one's clips alone. (The sampler is a stand-in here:
  this is about which clips each process makes.)"""
  import types

  from asva_jax.commands.protocol import generate, read_split
  from asva_jax.pipeline import pipeline
  from asva_jax.pipeline.jobs import SampleOptions
  calls = []

  def stand_in(models, clips, **kwargs):
    calls.append(len(clips))
    return np.zeros((len(clips), 12, *BUILD_SIZE, 3), np.uint8)

  monkeypatch.setattr(pipeline, "sample_batched", stand_in)
  source, videos, _ = read_split(shards, "test")
  models = types.SimpleNamespace(spec=types.SimpleNamespace(fps=6))
  o = SampleOptions(ckpt="unused", num_clips=3, batch_size=4)
  out = tmp_path / "o"
  assert generate(models, source, videos, o, BUILD_SIZE, str(out), False, process=(0, 2)) == 4
  first = {p: p.stat().st_ino for p in (out / "videos").rglob("*.mp4")}
  names = [generated_clip_name(v["key"], k) for v in videos for k in range(3)]
  assert sorted(p.relative_to(out / "videos").as_posix() for p in first) == sorted(names[:4])
  assert generate(models, source, videos, o, BUILD_SIZE, str(out), False, process=(1, 2)) == 5
  assert sorted(p.relative_to(out / "videos").as_posix() for p in (out / "videos").rglob("*.mp4")) == sorted(names)
  assert {p: p.stat().st_ino for p in first} == first
  assert generate(models, source, videos, o, BUILD_SIZE, str(out), False, process=(1, 2)) == 0
  assert calls == [4, 4, 4]  # 4 clips, then 4 + 1 padded to 4
