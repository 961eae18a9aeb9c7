"""The training stream and the evaluation loader: clip contents, 6-fps rule, determinism, exact resume,
per-host parts."""

import json
from pathlib import Path

import numpy as np
import pytest

from asva_jax.audio.fbank import waveform_to_mel
from asva_jax.data import clips, eval_loader, open_split, train_stream
from asva_jax.data.features import frame_times
from asva_jax.data.transforms import decode_image, make_clip
from asva_jax.prep import synthetic
from tests import data_pipeline_fixtures as fx


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  return fx.built_shards(tmp_path_factory)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
  return json.loads((fx.synthetic_root(tmp_path_factory) / "events.json").read_text())


def stream(shards, global_batch, seed, *, hosts=1, host=0, **kwargs):
  """The trainer's stream over the train split of `shards`, as host `host` of `hosts` runs it."""
  return train_stream(open_split(shards, "train"), seed=seed, global_batch=global_batch, process_index=host,
                      process_count=hosts, **kwargs)


def assert_batches_equal(expected, actual):
  for x, y in zip(expected, actual, strict=True):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def reference_select(times, start, fps=6, n=12):
  """The original loop, written out literally (docs/reference.md §8.3)."""
  out, target = [], start
  for i, t in enumerate(times):
    if t > start + n / fps + 1 / fps / 2:
      break
    if t >= target:
      out.append(i)
      target += 1 / fps
    if len(out) == n:
      break
  return out + [out[-1]] * (n - len(out))


@pytest.mark.parametrize("fps", [25, 29.97, 30, 6, 4])
def test_select_frames_is_the_original_rule(fps):
  rng = np.random.default_rng(int(fps * 100))
  times = np.arange(int(5 * fps)) / fps
  for start in list(rng.uniform(0, 3, 20)) + [0.0, 1.0, 3.0, 4.5]:
    assert clips.select_frames(times, start).tolist() == reference_select(times.tolist(), start)
  if fps == 25:  # targets k/6 from 0: the first frame at or after each
    assert clips.select_frames(times, 0.0).tolist() == [0, 5, 9, 13, 17, 21, 25, 30, 34, 38, 42, 46]
  if fps == 4:  # fewer frames than targets: each taken once, then the last repeated
    assert clips.select_frames(times, 0.0).tolist() == list(range(9)) + [8, 8, 8]


def test_audio_window_cuts_by_presentation_time():
  audio = np.arange(1, 48001, dtype=np.float32)  # 3 s at 16 kHz, first sample at 0.5 s
  np.testing.assert_array_equal(clips.audio_window(audio, 0.75, audio_start=0.5), audio[4000:36000])
  head = clips.audio_window(audio, 0.25, audio_start=0.5)  # zeros before the audio begins
  np.testing.assert_array_equal(head, np.concatenate([np.zeros(4000), audio[:28000]]))
  assert not clips.audio_window(audio, -3.0, audio_start=0.5).any()
  assert clips.audio_window(audio, -3.0, audio_start=0.5).shape == (32000,)
  np.testing.assert_array_equal(clips.audio_window(audio, 2.5, audio_start=0.5), audio[32000:])
  np.testing.assert_array_equal(clips.audio_window(audio, 1.0, audio_start=-0.5), audio[24000:])


def test_uniform_starts():
  np.testing.assert_allclose(clips.uniform_starts(5.0, 3), [0.0, 1.5, 3.0])
  np.testing.assert_allclose(clips.uniform_starts(5.0, 1), [1.5])


def test_example_layout_and_contents(shards, truth):
  """Frames = the rendered frames chosen by the 6-fps rule; mel = the aligned 2 s of audio."""
  batch = next(iter(stream(shards, 4, seed=0)))
  assert batch["video"].shape == (4, 12) + fx.BUILD_SIZE + (3,) and batch["video"].dtype == np.uint8
  assert batch["mel"].shape == (4, 128, 204) and batch["mel"].dtype == np.float32
  source = open_split(shards, "train")
  by_key = {source[i]["key"]: source[i] for i in range(len(source))}
  for b in range(4):
    record = by_key[batch["key"][b]]
    info = truth["videos"][record["key"].decode()]
    start, flip = float(batch["start"][b]), bool(batch["flip"][b])
    assert 0.0 <= start <= float(record["duration"]) - 2.0
    rendered = synthetic.make_clip(fx.SEED, info["class_index"], info["video_index"],
                                   height=fx.SOURCE_SIZE[0], width=fx.SOURCE_SIZE[1]).frames
    video = batch["video"][b][:, :, ::-1] if flip else batch["video"][b]
    # The stored frames the 6-fps rule picks (from the stored timestamps), mirrored when `flip`.
    np.testing.assert_array_equal(video, np.stack([decode_image(record["frames"][i]) for i in
                                                   clips.select_frames(frame_times(record), start)]))
    idx = clips.select_frames(np.arange(info["num_frames"]) / truth["fps"], start)
    err = np.abs(video.astype(float) - rendered[idx]).mean(axis=(1, 2, 3))
    assert err.max() < 3.0, err
    for k in range(12):  # and not a neighbouring frame where those differ
      for j in (idx[k] - 1, idx[k] + 1):
        if 0 <= j < len(rendered) and np.abs(rendered[j].astype(float) - rendered[idx[k]]).mean() > 4:
          assert np.abs(video[k].astype(float) - rendered[j]).mean() > err[k]
    audio = clips.audio_window(np.asarray(record["audio"]), float(batch["start"][b]),
                               audio_start=float(record["audio_start"]))
    np.testing.assert_allclose(batch["mel"][b], waveform_to_mel(audio), atol=1e-4)
    assert batch["prompt"][b] == record["prompt"] and batch["label"][b] == record["label"]


def test_audio_events_line_up_with_the_window(shards, truth):
  """A burst at event time t shows up in the clip's mel at column (t - start) / 10 ms, +-1."""
  source = open_split(shards, "train")
  checked = 0
  for i in range(len(source)):
    record = source[i]
    info = truth["videos"][record["key"].decode()]
    event = info["events"][0]
    start = max(0.0, event - 0.7)
    if start > float(record["duration"]) - 2.0:
      continue
    checked += 1
    mel = make_clip(record, start, False)["mel"]
    energy = mel.mean(axis=0)[:196]
    later = [t for t in info["events"][1:] if t - start < 1.96]
    if later:  # only up to the next burst
      energy = energy[:int((later[0] - start) / 0.01) - 3]
    onset = int(np.argmax(np.diff(energy))) + 1
    expected = (event - start) / 0.01
    assert abs(onset - expected) <= 2.5, (record["key"], onset, expected)
  assert checked >= len(source) // 2


def test_deterministic_per_seed_and_flip_shared_by_frames(shards):
  def batches(seed):
    it = iter(stream(shards, 3, seed))
    return [next(it) for _ in range(4)]
  a, b, c = batches(1), batches(1), batches(2)
  assert_batches_equal(a, b)
  assert any(not np.array_equal(x["start"], y["start"]) for x, y in zip(a, c))
  flips = np.concatenate([x["flip"] for x in a + c])
  assert flips.any() and not flips.all()


def test_epochs_reshuffle_and_cover_the_split(shards):
  it = iter(stream(shards, 1, seed=3))
  keys = [next(it)["key"][0] for _ in range(12)]
  assert sorted(keys[:6]) == sorted(keys[6:]) and len(set(keys[:6])) == 6
  assert keys[:6] != keys[6:]


def test_drop_last_per_epoch(shards):
  """6 records, global batch 4: one full batch per epoch, each of 4 different records, and the 2
  left over are dropped (not carried into the next epoch's batch)."""
  it = iter(stream(shards, 4, seed=3))
  epochs = [list(next(it)["key"]) for _ in range(6)]
  assert all(len(set(keys)) == 4 for keys in epochs)
  assert len({tuple(sorted(keys)) for keys in epochs}) > 1  # each epoch its own order


def test_resume_continues_with_the_same_batches(shards):
  it = iter(stream(shards, 2, seed=5))
  for _ in range(4):  # past one epoch (6 records / 2 per batch)
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  resumed = iter(stream(shards, 2, seed=5))
  resumed.set_state(state)
  assert_batches_equal(expected, [next(resumed) for _ in expected])


def test_worker_processes_give_exactly_the_in_process_batches(shards):
  """One data-source item is one host batch, so grain's workers (item i -> worker i % W) change
  nothing: a host's part from a resume step (past an epoch end) is the same batches in the same
  order as in-process loading."""
  kwargs = dict(seed=4, hosts=2, host=1, start_step=3)
  in_process = iter(stream(shards, 4, **kwargs))
  workers = iter(stream(shards, 4, worker_count=2, **kwargs))
  assert_batches_equal([next(in_process) for _ in range(5)], [next(workers) for _ in range(5)])


def test_per_host_parts_are_disjoint_and_complete(shards):
  """Each global batch split over 2 or 3 hosts: disjoint host parts that together are the one-host
  batch, row for row (same clips, starts and flips); a global batch of all 6 records covers the split."""
  source = open_split(shards, "train")
  all_keys = sorted(source[i]["key"] for i in range(len(source)))
  steps = 3
  single = iter(stream(shards, 6, seed=0))
  expected = [next(single) for _ in range(steps)]
  for batch in expected:
    assert sorted(batch["key"]) == all_keys            # complete
  for hosts in (2, 3):
    parts = [iter(stream(shards, 6, seed=0, hosts=hosts, host=h)) for h in range(hosts)]
    for step in range(steps):
      got = [next(p) for p in parts]
      assert all(len(g["key"]) == 6 // hosts for g in got)
      flat = [k for g in got for k in g["key"]]
      assert len(flat) == len(set(flat))               # disjoint
      joined = {k: np.concatenate([g[k] for g in got]) for k in got[0]}
      assert_batches_equal([expected[step]], [joined])


def test_eval_three_uniform_clips_per_video(shards):
  source = open_split(shards, "test")
  for hosts in (1, 2, 4):  # 3 videos x 3 clips: unequal parts for 2 and 4 hosts
    seen = []
    for host in range(hosts):
      for batch in eval_loader(shards, 2, process_index=host, process_count=hosts):
        assert not batch["flip"].any()
        seen += [(int(v), int(c), float(s)) for v, c, s in
                 zip(batch["video_index"], batch["clip_index"], batch["start"])]
    assert sorted((v, c) for v, c, _ in seen) == [(v, c) for v in range(len(source)) for c in range(3)]
    for v, c, s in seen:
      expected = clips.uniform_starts(float(source[v]["duration"]), 3)[c]
      assert abs(s - expected) < 1e-5


# Hard-coded expectations, worked out by hand from the rule of docs/reference.md §8.3 (frame i
# at i / fps; for each k the first frame at or after start + k/6, the target accumulated in
# float64 as the original does). Marked (*): an exact tie where the accumulated target lands a
# rounding error above k/6, so the original, and we, take the next frame.
HAND_SELECTED = [
    # (time base, frame count, start, indices)
    ((1, 25), 125, 0.0, [0, 5, 9, 13, 17, 21, 25, 30, 34, 38, 42, 46]),
    ((1, 25), 125, 0.37, [10, 14, 18, 22, 26, 31, 35, 39, 43, 47, 51, 56]),
    ((1001, 30000), 150, 0.0, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]),  # 29.97 fps
    ((1001, 30000), 150, 0.5, [15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70]),
    ((1, 30), 150, 0.0, [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 56]),  # 56 (*)
    ((1, 30), 150, 1.0, [30, 35, 41, 46, 51, 56, 61, 66, 70, 75, 80, 85]),  # 41..66 (*)
    ((1, 24), 120, 0.0, [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 45]),  # 45 (*)
    ((1, 24), 120, 1.3, [32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76]),
    ((1, 10), 50, 0.2, [2, 4, 6, 7, 9, 11, 12, 14, 16, 18, 19, 21]),  # 18 (*)
    ((1, 6), 30, 0.25, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]),
    ((1, 4), 20, 0.0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]),  # 9 frames in the window, last repeated
]


def _indexed_record(time_base, count, audio, audio_start):
  """A record as data_prep.build writes it, whose frame i is a 4 x 4 PNG of value i."""
  from asva_jax.media.image import encode_image
  frames = [encode_image(np.full((4, 4, 3), i, np.uint8), "png", 95) for i in range(count)]
  return {"frames": frames, "frame_pts": np.arange(count, dtype=np.int64),
          "time_base": np.asarray(time_base, np.int64), "audio": audio.astype(np.float32),
          "audio_start": np.float32(audio_start), "duration": np.float32(count * time_base[0] / time_base[1]),
          "label": 0, "prompt": b"p", "key": b"k"}


@pytest.mark.parametrize("time_base,count,start,expected", HAND_SELECTED)
def test_clip_frames_are_the_hand_worked_ones(time_base, count, start, expected):
  assert clips.select_frames(np.arange(count) * time_base[0] / time_base[1], start).tolist() == expected
  record = _indexed_record(time_base, count, np.zeros(16000 * 6), 0.0)
  video = make_clip(record, start, flip=False)["video"]
  assert video[:, 0, 0, 0].tolist() == expected


@pytest.fixture(scope="module")
def golden_mels():
  return dict(np.load(Path(__file__).parent / "data" / "fbank" / "fbank_golden.npz"))


@pytest.mark.parametrize("name", ["noise_2s", "chirp_2s"])
@pytest.mark.parametrize("audio_start,lead", [(0.0, 12000), (0.25, 4000), (-0.5, 8000)])
def test_clip_mel_is_the_originals(golden_mels, name, audio_start, lead):
  """A record whose track holds one of the original's golden 2-s waves `lead` samples in: the
  clip starting at that wave's time gives the original ImageBind mel of the wave."""
  wave = golden_mels[f"{name}__wave"]
  audio = np.concatenate([np.zeros(lead), wave, np.zeros(7000)])
  record = _indexed_record((1, 25), 150, audio, audio_start)
  start = audio_start + lead / 16000
  mel = make_clip(record, start, flip=False)["mel"]
  expected = golden_mels[f"{name}__mel"][0]
  err = np.abs(mel.astype(np.float64) - expected)
  assert err.max() < 2e-3 and np.median(err) < 1e-5, (err.max(), np.median(err))
