"""The two synchronisation measures: onset alignment recovers known audio shifts; event-timing
error is 0 for true pairings and larger for shuffled ones; the CLI and its errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from asva_jax.data.clips import select_frames
from asva_jax.errors import AsvaError
from asva_jax.commands import eval_sync
from asva_jax.eval import sync
from asva_jax.eval.sync import files as sync_files
from asva_jax.media import mp4
from asva_jax.prep import synthetic

FPS, SR = 25, 16000
SHIFTS = {"early": -0.32, "true": 0.0, "late": 0.2}   # audio later than the picture by this many s


@pytest.fixture(scope="module")
def shifted_videos(tmp_path_factory):
  """One synthetic clip written three times, its audio shifted by SHIFTS."""
  root = tmp_path_factory.mktemp("shifted")
  clip = synthetic.make_clip(1, 0, 0, height=24, width=32, fps=FPS, sample_rate=SR)
  paths = {}
  for name, shift in SHIFTS.items():
    audio = clip.audio if shift >= 0 else clip.audio[:, int(round(-shift * SR)):]
    paths[name] = root / f"{name}.mp4"
    mp4.write_mp4(paths[name], clip.frames, FPS, audio, SR, audio_offset=max(shift, 0.0))
  return paths


def test_best_lag_recovers_known_shifts(shifted_videos):
  results = {name: sync_files.measure(path) for name, path in shifted_videos.items()}
  for name, shift in SHIFTS.items():
    assert results[name].best_lag == round(shift * FPS), (name, results[name])
    assert results[name].best_lag_seconds == pytest.approx(shift, abs=0.5 / FPS)
    assert results[name].best > 0.5, (name, results[name])
  assert results["true"].lag0 == results["true"].best
  assert results["true"].lag0 > 0.5 > max(results["early"].lag0, results["late"].lag0)


def test_shift_search_is_bounded_by_max_lag(shifted_videos):
  a = sync_files.measure(shifted_videos["late"], max_lag_seconds=0.1)
  assert abs(a.best_lag) <= round(0.1 * FPS)
  assert a.best < sync_files.measure(shifted_videos["late"]).best


def clips_at_6fps(num):
  """(12 frames at 6 fps, event frames) of `num` short synthetic videos, one per class in turn."""
  out = []
  timing = synthetic.Timing(durations=(2.2, 2.2), num_events=(1, 2), min_gap=0.8, event_seconds=0.4)
  for i in range(num):
    clip = synthetic.make_clip(3, i % 3, i, height=24, width=24, fps=FPS, sample_rate=SR, timing=timing)
    times = np.arange(len(clip.frames)) / FPS
    idx = select_frames(times, 0.1)
    out.append((clip.frames[idx], sync.event_frames(clip.events, times[idx])))
  return out


def test_event_timing_error_is_zero_for_true_and_larger_for_shuffled():
  clips = clips_at_6fps(9)
  assert all(len(events) for _, events in clips)
  true = [sync.event_timing_error(frames, events) for frames, events in clips]
  shuffled = [sync.event_timing_error(clips[i][0], clips[(i + 1) % len(clips)][1])
              for i in range(len(clips))]
  assert true == [0.0] * len(clips)
  assert np.mean(shuffled) > 1.0, shuffled


def test_detector_definition():
  # A change that lasts two frames (out and back) is one event, at its onset.
  assert sync.motion_events(np.array([0, 0, 5, 5, 0, 0, 1, 0]), 2).tolist() == [2, 6]
  # The K strongest rising maxima, returned in frame order.
  assert sync.motion_events(np.array([0, 3, 0, 9, 0, 5, 0]), 2).tolist() == [3, 5]
  # Nothing rises: nothing detected, which counts as the worst case.
  assert sync.motion_events(np.zeros(6), 1).size == 0
  assert sync.event_timing_error(np.zeros((6, 2, 2, 3), np.uint8), [3]) == 5.0
  assert np.isnan(sync.timing_error(np.array([1]), np.array([], int), 6))
  assert sync.timing_error(np.array([2, 7]), np.array([3, 9]), 12) == 1.5


def test_event_frames_first_frame_at_or_after_and_frame0_dropped():
  times = np.arange(6) / 6
  assert sync.event_frames([0.0, 0.2, 1 / 6, 0.9, 2.0], times).tolist() == [1, 2]


def test_cli_prints_per_video_and_mean(shifted_videos, tmp_path, capsys):
  out = tmp_path / "sync.json"
  with pytest.raises(SystemExit) as info:
    eval_sync.run(["sync", str(shifted_videos["true"]), str(shifted_videos["late"]), "--json", str(out)])
  assert not info.value.code
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0].startswith(str(shifted_videos["true"])) and "best lag +0 frames" in lines[0]
  assert "best lag +5 frames (+0.20 s)" in lines[1]
  assert lines[2].startswith("mean over 2 video(s)")
  report = json.loads(out.read_text())
  assert report["videos"][str(shifted_videos["late"])]["best_lag"] == 5


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b"not a video at all"), "unreadable or corrupt"),
    (lambda p: mp4.write_mp4(p, None, FPS, np.zeros((1, SR), np.float32), SR), "no video stream"),
    (lambda p: mp4.write_mp4(p, np.zeros((30, 16, 16, 3), np.uint8), FPS), "no audio stream"),
])
def test_bad_input_names_file_and_problem(tmp_path, make, problem):
  path = tmp_path / "bad.mp4"
  make(path)
  with pytest.raises(AsvaError, match=problem) as info:
    sync_files.measure(path)
  assert str(path) in str(info.value)


def test_cli_bad_input_is_one_line(tmp_path):
  path = tmp_path / "missing.mp4"
  env = {**os.environ, "PYTHONPATH": os.getcwd()}
  proc = subprocess.run([sys.executable, "-m", "asva_jax.eval.sync", str(path)],
                        capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip() == f"error: {path}: no such file"
