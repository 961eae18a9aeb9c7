"""The synthetic audio-visual generator: layout, real codecs, events in sync, determinism."""

import json

import av
import numpy as np
import pytest

from asva_jax.audio.io import load_audio
from asva_jax.media import mp4
from asva_jax.prep import synthetic
from tests import data_pipeline_fixtures as fx


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return fx.synthetic_root(tmp_path_factory)


def test_layout_and_lists(root):
  mapping = json.loads((root / "class_mapping.json").read_text())
  train = (root / "train.txt").read_text().split()
  test = (root / "test.txt").read_text().split()
  assert len(mapping) == fx.NUM_CLASSES
  assert len(train) + len(test) == fx.NUM_CLASSES * fx.VIDEOS_PER_CLASS
  assert not set(train) & set(test)
  for rel in train + test:
    assert rel.split("/")[0] in mapping
    assert (root / "videos" / rel).is_file()
  truth = json.loads((root / "events.json").read_text())
  assert sorted(truth["videos"]) == sorted(train + test)


def test_real_codecs_and_durations(root):
  truth = json.loads((root / "events.json").read_text())
  for rel, info in truth["videos"].items():
    with av.open(str(root / "videos" / rel)) as c:
      video, audio = c.streams.video[0], c.streams.audio[0]
      assert video.codec_context.name == ("h264" if synthetic.video_codec() == "libx264" else "mpeg4")
      assert audio.codec_context.name == "aac"
      assert audio.channels == 2
      assert (video.height, video.width) == fx.SOURCE_SIZE
      assert 3.0 <= info["duration"] <= 6.0
      assert video.frames == info["num_frames"]


def test_frames_change_exactly_at_events(root):
  """Decoded frames: the ball changes at each event frame and is static just before it."""
  truth = json.loads((root / "events.json").read_text())
  rel, info = sorted(truth["videos"].items())[0]
  with av.open(str(root / "videos" / rel)) as c:
    frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float32)
  change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))   # change[k] = frame k+1 vs k
  onsets = [int(round(t * truth["fps"])) for t in info["events"]]
  quiet = np.median(change)
  for k in onsets:
    assert change[k - 1] > 10 * quiet + 0.5, (k, change[k - 2:k + 1])
    assert change[k - 2] < change[k - 1] / 4


def test_audio_bursts_at_events(root):
  """Decoded AAC audio: energy onsets within one 10-ms hop of the ground-truth times."""
  truth = json.loads((root / "events.json").read_text())
  for rel, info in sorted(truth["videos"].items())[:3]:
    audio = load_audio(root / "videos" / rel)
    hop = 160
    energy = np.square(audio[: len(audio) // hop * hop].reshape(-1, hop)).mean(axis=1)
    for t in info["events"]:
      k = int(round(t * 100))
      before, after = energy[k - 3:k - 1].max(), energy[k:k + 2].max()
      assert after > 30 * before, (rel, t, before, after)


def test_clip_is_deterministic_per_seed():
  a = synthetic.make_clip(3, 1, 0, height=24, width=32)
  b = synthetic.make_clip(3, 1, 0, height=24, width=32)
  c = synthetic.make_clip(4, 1, 0, height=24, width=32)
  np.testing.assert_array_equal(a.frames, b.frames)
  np.testing.assert_array_equal(a.audio, b.audio)
  assert a.events == b.events
  assert a.events != c.events or not np.array_equal(a.audio, c.audio)


def test_files_are_byte_identical_per_seed(tmp_path):
  """Same seed, same bytes, also when other work ran in the process between the writes: x264's
  AVX-512 path once made ~5 % of such rewrites differ (media/mp4.py X264_OPTIONS), so the dataset is
  rewritten several times with unrelated vector work in between."""
  rng = np.random.default_rng()
  synthetic.write_dataset(tmp_path / "a", 1, 2, seed=5, height=24, width=32, progress=False)
  for k in range(4):
    junk = rng.random(4096).astype(np.float32)   # leaves other data in registers and memory
    junk.sort()
    np.sqrt(junk, out=junk)
    other = tmp_path / f"b{k}"
    synthetic.write_dataset(other, 1, 2, seed=5, height=24, width=32, progress=False)
    for path in sorted((tmp_path / "a").rglob("*.*")):
      assert path.read_bytes() == (other / path.relative_to(tmp_path / "a")).read_bytes(), (k, path)
    assert len(list(other.rglob("*.mp4"))) == 2


def test_classes_differ():
  specs = [synthetic.class_spec(i) for i in range(6)]
  assert len({s.folder for s in specs}) == 6
  assert {s.behaviour for s in specs} == set(synthetic.BEHAVIOURS)
  assert {s.sound for s in specs} == set(synthetic.SOUNDS)


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
  """A failure after data went out (here: once everything is muxed) removes the temporary file."""
  def mux_then_fail(*args):
    real_mux(*args)
    raise RuntimeError("interrupted")
  real_mux = mp4._mux
  monkeypatch.setattr(mp4, "_mux", mux_then_fail)
  clip = synthetic.make_clip(0, 0, 0, height=16, width=16)
  with pytest.raises(RuntimeError, match="interrupted"):
    mp4.write_mp4(tmp_path / "x.mp4", clip.frames, 25, clip.audio)
  assert not list(tmp_path.iterdir())
