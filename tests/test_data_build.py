"""data_prep.build: records hold what the videos hold; resumable; bad input skipped and reported."""

import concurrent.futures as cf
import json
import shutil
import signal
import subprocess
import sys

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds
from scipy.signal import correlate

from asva_jax.audio.fbank import waveform_to_mel
from asva_jax.audio.io import audio_start_time, load_audio
from asva_jax.audio.resample import resample
from asva_jax.data import clips
from asva_jax.data.features import frame_times
from asva_jax.data.source import DataError, open_split
from asva_jax.data.transforms import decode_image, make_clip
from asva_jax.prep import build as build_lib
from asva_jax.media import resize
from asva_jax.prep import sources, synthetic, workers
from asva_jax.media.mp4 import write_mp4
from tests import crashing_decoder
from tests import data_pipeline_fixtures as fx


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return fx.synthetic_root(tmp_path_factory)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  return fx.built_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def truth(root):
  return json.loads((root / "events.json").read_text())


def test_readable_with_tfds_data_source(shards, truth):
  train = tfds.data_source("avsync15", data_dir=str(shards), split="train")
  test = tfds.data_source("avsync15", data_dir=str(shards), split="test")
  keys = sorted(r["key"].decode() for r in list(train) + list(test))
  assert keys == sorted(truth["videos"])
  summary = json.loads((shards / "summary-avsync15-train.json").read_text())
  assert summary["num_skipped"] == 0
  assert sum(summary["counts_per_class"].values()) == len(train)
  assert not list(shards.rglob("*.tmp"))


def test_record_holds_every_frame_and_the_audio(shards, root, truth):
  source = open_split(shards, "train")
  sample_rate = truth["sample_rate"]
  for record in [source[0], source[3]]:
    info = truth["videos"][record["key"].decode()]
    clip = synthetic.make_clip(fx.SEED, info["class_index"], info["video_index"],
                               height=fx.SOURCE_SIZE[0], width=fx.SOURCE_SIZE[1], fps=truth["fps"],
                               sample_rate=sample_rate)
    assert record["prompt"].decode() == synthetic.class_spec(info["class_index"]).prompt
    assert record["class_folder"].decode() == info["class"]
    # Every frame, with its exact time k / fps.
    times = frame_times(record)
    np.testing.assert_allclose(times, np.arange(info["num_frames"]) / truth["fps"], atol=1e-9)
    assert abs(float(record["duration"]) - info["duration"]) < 0.05
    # Stored (PNG, lossless) frames = the decoded source frames; close to the rendered ones.
    with av.open(record["source_path"].decode()) as c:
      decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    stored = np.stack([decode_image(b) for b in record["frames"]])
    np.testing.assert_array_equal(stored, resize.crop_and_resize(decoded, fx.BUILD_SIZE))
    assert np.abs(stored.astype(float) - clip.frames).mean() < 3.0
    # Audio: the 16-kHz mono downmix (0.75 x left channel), aligned within one 10-ms hop.
    expected = resample(clip.audio.mean(axis=0), sample_rate, 16000)
    audio = np.asarray(record["audio"])
    n = min(len(audio), len(expected))
    lags = np.arange(-480, 481)
    scores = [np.dot(audio[480:n - 480], expected[480 + k:n - 480 + k]) for k in lags]
    assert abs(int(lags[int(np.argmax(scores))])) <= 160
    gain = np.dot(audio[:n], expected[:n]) / np.dot(expected[:n], expected[:n])
    assert 0.9 < gain < 1.1, gain


def test_rerun_skips_finished_shards(tmp_path, root):
  config = fx.build_config(root, tmp_path / "out", "train", videos_per_shard=4)
  first = build_lib.build(config, progress=False)
  assert first["videos_processed_this_run"] == first["num_listed"] == 6
  second = build_lib.build(config, progress=False)
  assert second["videos_processed_this_run"] == 0
  # Lose the last shard (as if the build had been interrupted before it): only it is redone.
  last = build_lib.shard_path(config, 1, 2)
  before = last.read_bytes()
  build_lib.sidecar_path(config, 1, 2).unlink()
  last.unlink()
  third = build_lib.build(config, progress=False)
  assert third["videos_processed_this_run"] == 2
  assert last.read_bytes() == before
  assert third["num_written"] == 6 and third["counts_per_class"] == first["counts_per_class"]
  with pytest.raises(ValueError, match="other settings"):
    build_lib.build(fx.build_config(root, tmp_path / "out", "train", videos_per_shard=3), progress=False)


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory, root):
  """The synthetic dataset plus one file of each bad kind, all listed in train.txt."""
  bad = tmp_path_factory.mktemp("bad_dataset")
  shutil.copytree(root, bad, dirs_exist_ok=True)
  folder = sorted(json.loads((root / "class_mapping.json").read_text()))[0]
  videos = bad / "videos" / folder
  good = sorted(videos.glob("*.mp4"))[0].read_bytes()
  clip = synthetic.make_clip(0, 0, 0, height=24, width=32)
  (videos / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
  (videos / "truncated.mp4").write_bytes(good[: len(good) // 2])
  write_mp4(videos / "no_audio.mp4", clip.frames, 25, None)
  write_mp4(videos / "no_video.mp4", None, 25, clip.audio, 48000)
  write_mp4(videos / "short.mp4", clip.frames[:40], 25, clip.audio[:, :int(1.6 * 48000)], 48000)
  names = ["corrupt", "truncated", "no_audio", "no_video", "short", "missing"]
  with open(bad / "train.txt", "a") as f:
    f.writelines(f"{folder}/{n}.mp4\n" for n in names)
  return bad, folder


EXPECTED_REASONS = {
    "corrupt": "corrupt or unreadable mp4", "truncated": "corrupt or unreadable mp4",
    "no_audio": "no audio stream", "no_video": "no video stream", "short": "shorter than 2 s",
    "missing": "listed but the file does not exist",
}


def test_bad_input_is_skipped_and_reported(tmp_path, bad_dataset):
  bad, folder = bad_dataset
  summary = build_lib.build(fx.build_config(bad, tmp_path, "train"), progress=False)
  reasons = {s["key"].split("/")[-1][:-4]: s["reason"] for s in summary["skipped"]}
  assert sorted(reasons) == sorted(EXPECTED_REASONS)
  for name, reason in EXPECTED_REASONS.items():
    assert reasons[name].startswith(reason), (name, reasons[name])
  assert summary["num_written"] == 6
  assert json.loads((tmp_path / "summary-avsync15-train.json").read_text())["skipped"] == summary["skipped"]
  assert len(open_split(tmp_path, "train")) == 6


def test_truncated_with_index_first_is_reported(tmp_path, root):
  """A truncated file whose index (moov) comes first opens, but decodes short."""
  src = sorted((root / "videos").rglob("*.mp4"))[0]
  fast = tmp_path / "fast.mp4"
  with av.open(str(src)) as inp, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
    streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
    for packet in inp.demux():
      if packet.dts is not None:
        packet.stream = streams[packet.stream.index]
        out.mux(packet)
  data = fast.read_bytes()
  (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
  from asva_jax.prep.decode import SkipVideo, decode_video
  with pytest.raises(SkipVideo, match="truncated"):
    decode_video(str(tmp_path / "cut.mp4"), (24, 32))


def test_cli_parallel_build_exits_zero_on_bad_input(tmp_path, bad_dataset):
  bad, _ = bad_dataset
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "data_prep.build", "--dataset", "avsync15", "--root", str(bad),
         "--split", "train", "--out", str(out), "--size", "24,32", "--num-workers", "2",
         "--videos-per-shard", "5"]
  result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((out / "summary-avsync15-train.json").read_text())
  assert summary["num_written"] == 6 and summary["num_skipped"] == len(EXPECTED_REASONS)
  for name in EXPECTED_REASONS:
    assert f"{name}.mp4" in result.stdout
  record = open_split(out, "train")[0]
  assert decode_image(record["frames"][0]).shape == (24, 32, 3)


def _sidecar_keys(config, count):
  return [k for i in range(count)
          for k in json.loads(build_lib.sidecar_path(config, i, count).read_text())["keys"]]


def test_crashing_decoder_process_skips_only_its_video(tmp_path, root, shards):
  """A worker process killed while decoding one video costs that video only; the shards keep
  their order."""
  import functools
  reference = fx.build_config(root, shards, "test")
  order = _sidecar_keys(reference, 2)
  victim = order[1]
  config = fx.build_config(root, tmp_path, "test")
  summary = build_lib.build(config, num_workers=2, progress=False,
                            process=functools.partial(crashing_decoder.crash_on, victim=victim))
  assert [(s["key"], s["reason"]) for s in summary["skipped"]] == [
      (victim, "decoder process crashed (killed by signal 9 (SIGKILL))")]
  assert summary["num_written"] == len(order) - 1
  assert _sidecar_keys(config, 2) == [k for k in order if k != victim]
  assert json.loads((tmp_path / "summary-avsync15-test.json").read_text())["skipped"] == summary["skipped"]
  assert [r["key"].decode() for r in open_split(tmp_path, "test")] == [k for k in order if k != victim]


def test_ordered_map_replaces_a_broken_pool():
  """Two crashes among ten items on two workers: only the killing items fail, in place, and a
  new pool takes the rest. `signal.raise_signal` (cheap to spawn) returns for signals whose
  default action is to ignore them and kills its process for SIGKILL / SIGTERM."""
  items = [signal.SIGCHLD, signal.SIGURG, signal.SIGKILL, signal.SIGWINCH, signal.SIGCHLD,
           signal.SIGURG, signal.SIGWINCH, signal.SIGTERM, signal.SIGCHLD, signal.SIGURG]
  results = list(workers.ordered_map(signal.raise_signal, items, 2, on_crash=lambda item, how: (item, how)))
  assert results == [None, None, (signal.SIGKILL, "killed by signal 9 (SIGKILL)"), None, None, None,
                     None, (signal.SIGTERM, "killed by signal 15 (SIGTERM)"), None, None]


def test_metadata_writers_take_turns(tmp_path, shards, monkeypatch):
  """While one build writes the TFDS metadata it holds the lock file, so a second writer waits
  (shown with a non-blocking attempt while the first is held inside); afterwards the lock is
  free, and whichever split's build writes last lists every finished split."""
  import fcntl
  import threading
  shutil.copytree(shards, tmp_path, dirs_exist_ok=True)
  version_dir = tmp_path / "avsync15" / "1.0.0"
  class_names = json.loads((version_dir / "build-train.json").read_text())["class_names"]
  train, test = (fx.build_config("unused", tmp_path, split) for split in ("train", "test"))
  inside, release = threading.Event(), threading.Event()
  locked_section = build_lib._write_tfds_metadata_locked

  def held(config, names):
    inside.set()
    assert release.wait(60)
    return locked_section(config, names)

  def try_lock():
    with open(version_dir / ".metadata.lock", "a") as other:
      fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
      fcntl.flock(other, fcntl.LOCK_UN)

  monkeypatch.setattr(build_lib, "_write_tfds_metadata_locked", held)
  with cf.ThreadPoolExecutor(1) as pool:
    first = pool.submit(build_lib._write_tfds_metadata, train, class_names)
    assert inside.wait(60)
    try:
      with pytest.raises(BlockingIOError):
        try_lock()
    finally:
      release.set()
    assert sorted(first.result()) == ["test", "train"]
  try_lock()  # released
  monkeypatch.undo()
  for config in (test, train):
    assert sorted(build_lib._write_tfds_metadata(config, class_names)) == ["test", "train"]
  assert not [p.name for p in version_dir.iterdir() if p.name.endswith(".tmp")]
  assert len(tfds.data_source("avsync15", data_dir=str(tmp_path), split="test")) == fx.NUM_CLASSES


def test_sources_layouts(tmp_path):
  (tmp_path / "tgh" / "videos").mkdir(parents=True)
  (tmp_path / "tgh" / "train.txt").write_text("0001_denoised_thumb.mp4\n\n")
  listing = sources.list_videos("thegreatesthits", tmp_path / "tgh", "train")
  assert [e.prompt for e in listing.entries] == [sources.GREATEST_HITS_PROMPT]
  assert listing.entries[0].path.endswith("tgh/videos/0001_denoised_thumb.mp4")
  (tmp_path / "ls" / "videos" / "test" / "fire_crackling").mkdir(parents=True)
  (tmp_path / "ls" / "test.txt").write_text("fire_crackling/a.mp4\n")
  (tmp_path / "ls" / "class_mapping.json").write_text('{"fire_crackling": "fire crackling"}')
  entry = sources.list_videos("landscapes", tmp_path / "ls", "test").entries[0]
  assert entry.path.endswith("ls/videos/test/fire_crackling/a.mp4") and entry.prompt == "fire crackling"
  (tmp_path / "f" / "dog_barking").mkdir(parents=True)
  (tmp_path / "f" / "dog_barking" / "x.mp4").write_bytes(b"")
  listing = sources.list_videos("folder", tmp_path / "f", "train")
  assert [(e.key, e.prompt) for e in listing.entries] == [("dog_barking/x.mp4", "dog barking")]
  with pytest.raises(sources.DatasetLayoutError, match="class_mapping.json"):
    sources.list_videos("avsync15", tmp_path / "f", "train")


def test_aspect_crop_box_matches_the_original_rule():
  assert resize.aspect_crop_box(360, 640, (256, 256)) == (0, 140, 360, 360)
  assert resize.aspect_crop_box(640, 360, (256, 256)) == (140, 0, 360, 360)
  assert resize.aspect_crop_box(360, 640, (128, 256)) == (20, 0, 320, 640)
  assert resize.aspect_crop_box(100, 300, (128, 256)) == (0, 50, 100, 200)


AUDIO_OFFSET = 0.25


def _burst_lag(window, truth, start, max_lag=8000):
  """Lag in samples (|lag| <= max_lag, 0.5 s: more than the 0.25-s offset) that best aligns
  a window cut at `start` s with `truth` (time 0 = the first video frame)."""
  s0 = int(start * 16000)
  n = min(len(window), len(truth) - s0)
  padded = np.pad(truth, (max_lag, max_lag + len(window)))[s0:s0 + n + 2 * max_lag]
  scores = correlate(padded, window[:n], mode="valid", method="fft")
  return int(np.argmax(scores)) - max_lag


def test_audio_stream_starting_after_the_video_stays_aligned(tmp_path):
  """Audio whose stream starts 0.25 s after the video: clips and `load_audio` windows cut it
  by presentation time, so each click is heard when the ball is seen to move."""
  clip = synthetic.make_clip(fx.SEED, 1, 1, height=fx.SOURCE_SIZE[0], width=fx.SOURCE_SIZE[1])
  assert clip.events[0] > AUDIO_OFFSET + 0.2
  delay = int(AUDIO_OFFSET * 48000)
  # The rendered soundtrack from 0.25 s on, presented from 0.25 s on: events stay in sync.
  path = tmp_path / "src" / "late_audio" / "late.mp4"
  write_mp4(path, clip.frames, 25, clip.audio[:, delay:], 48000, audio_offset=AUDIO_OFFSET)
  assert abs(audio_start_time(path) - AUDIO_OFFSET) < 0.03  # AAC priming moves it slightly
  build_lib.build(fx.build_config(tmp_path / "src", tmp_path / "out", "train", dataset="folder",
                                  name="late"), num_workers=0, progress=False)
  record = open_split(tmp_path / "out", "train")[0]
  audio, audio_start = np.asarray(record["audio"]), float(record["audio_start"])
  assert audio_start == pytest.approx(audio_start_time(path), abs=1e-6)
  times = frame_times(record)
  truth = resample(clip.audio.mean(axis=0), 48000, 16000)  # time 0 = first video frame
  for event in clip.events:
    k = int(np.argmin(np.abs(times - event)))  # seen: the ball moves at the event's frame
    assert abs(times[k] - event) < 1e-9
    frames = [decode_image(record["frames"][j]).astype(float) for j in (k - 1, k)]
    assert np.abs(frames[1] - frames[0]).mean() > 1.0
    start = max(0.0, event - 0.7)
    window = clips.audio_window(audio, start, audio_start=audio_start)
    assert min(32000, len(truth) - int(start * 16000)) <= len(window) <= 32000
    assert abs(_burst_lag(window, truth, start)) <= 160, event  # heard within one 10-ms hop
    mel = make_clip(record, start, False)["mel"]
    np.testing.assert_allclose(mel, waveform_to_mel(window), atol=1e-5)
    # load_audio windows use the same times.
    direct = load_audio(path, start=start, duration=2.0)
    assert abs(len(direct) - len(window)) <= 1
    assert abs(_burst_lag(direct, truth, start)) <= 160, event
  # A clip from 0 s begins before the audio does: silence until the audio starts.
  head = clips.audio_window(audio, 0.0, audio_start=audio_start)
  first = -int(np.floor(-audio_start * 16000))  # samples before the audio
  assert len(head) == 32000 and not head[:first].any() and head[first:].any()
  np.testing.assert_array_equal(head[first:], audio[:32000 - first])
  assert not load_audio(path, start=0.0, duration=0.2).any()
  # Shards from before audio_start was stored are refused, not silently misaligned.
  with pytest.raises(DataError, match="rebuild"):
    make_clip({k: v for k, v in record.items() if k != "audio_start"}, 0.0, False)


def test_a_split_with_no_usable_video_is_refused_by_the_loader(tmp_path):
  """Every listed video unusable: the build reports it (the CLI exits 2, tests/bad_input_cases.py);
  opening the empty split names the folder instead of failing deep inside array_record."""
  (tmp_path / "root" / "dog").mkdir(parents=True)
  (tmp_path / "root" / "dog" / "empty.mp4").write_bytes(b"")
  config = build_lib.BuildConfig(dataset="folder", root=str(tmp_path / "root"), split="train",
                                 out=str(tmp_path / "out"), size=(32, 32), name="folder")
  summary = build_lib.build(config, num_workers=0, progress=False)
  assert summary["num_written"] == 0 and summary["skipped"][0]["path"].endswith("empty.mp4")
  with pytest.raises(DataError, match=r"out/folder/1\.0\.0: split 'train' has no records"):
    open_split(tmp_path / "out", "train")


def test_an_empty_listing_is_refused_before_writing(tmp_path):
  (tmp_path / "root").mkdir()
  config = build_lib.BuildConfig(dataset="folder", root=str(tmp_path / "root"), split="train",
                                 out=str(tmp_path / "out"), size=(32, 32), name="folder")
  with pytest.raises(sources.DatasetLayoutError, match=r"root: no videos for split 'train'"):
    build_lib.build(config, progress=False)
  assert not (tmp_path / "out").exists()
