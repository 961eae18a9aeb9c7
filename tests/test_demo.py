"""The demo flow at a tiny size: synthetic data with a test split, training from scratch (killed
during training, then rerun: it resumes), sampling every held-out clip with its own and with shuffled
audio, the outputs and the report; a rerun resumes from the run's checkpoint (no training left) and
writes the same report again."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest
from PIL import Image

from asva_jax.demo import report as demo_report
from configs import demo as demo_config
from tests.training_fixtures import ROOT, subprocess_env

NUM_STEPS = 6


def tiny_demo_config(num_steps: int):
  c = demo_config.get_config()
  s = c.data.synthetic
  s.num_classes, s.videos_per_class, s.test_fraction = 2, 3, 1 / 3   # 2 train + 1 test per class
  c.model.unet = dict(  # the demo's one UNet level (16 x 16 frames -> 4 x 4 x 48), narrower
      in_channels=48, out_channels=48, block_out_channels=[16], layers_per_block=1,
      norm_num_groups=8, attention_head_dim=2, cross_attention_dim=8, audio_cross_attention_dim=8,
      down_block_types=["FFSpatioAudioTempCrossAttnDownBlock3D"],
      mid_block_type="FFSpatioAudioTempCrossAttnUNetMidBlock3D",
      up_block_types=["FFSpatioAudioTempCrossAttnUpBlock3D"])
  c.model.audio_encoder = dict(embed_dim=8, num_blocks=1, num_heads=2, out_embed_dim=8)
  c.xla_backend_optimization_level = 0
  c.train.ema_decay, c.train.ema_warmup = 0.9, True  # the report samples EMA weights; resumed after a kill
  c.train.num_steps = num_steps
  c.train.batch_size = 2
  c.train.checkpoint_every = 1
  c.train.log_every = 1
  c.log.progress = False
  c.demo.num_inference_steps = 2
  c.demo.batch_size = 2
  return c


def run_demo(config, workdir):
  from asva_jax.demo.job import run_demo as run
  return run(config, workdir)


def killed_during_training(workdir, tmp_path_factory) -> None:
  """The demo job in a subprocess, SIGKILLed as soon as its first checkpoint is committed."""
  code = (f"from tests.test_demo import tiny_demo_config; from asva_jax.demo.job import run_demo; "
          f"run_demo(tiny_demo_config({NUM_STEPS}), {str(workdir)!r})")
  proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=subprocess_env(tmp_path_factory),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  first = workdir / "checkpoints" / "1" / "commit_success.txt"
  deadline = time.monotonic() + 600
  while proc.poll() is None and not first.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
  os.kill(proc.pid, signal.SIGKILL)
  output = proc.communicate()[0]
  assert proc.returncode == -signal.SIGKILL, f"the demo ended before the kill:\n{output[-3000:]}"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  """Killed during training, then rerun to the end: (workdir, report, the rerun's stdout)."""
  workdir = tmp_path_factory.mktemp("demo")
  killed_during_training(workdir, tmp_path_factory)
  assert not (workdir / demo_report.REPORT).exists()
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    first = run_demo(tiny_demo_config(NUM_STEPS), workdir)
  return workdir, first, out.getvalue()


def test_killed_demo_resumes_and_finishes(demo_run):
  workdir, report, stdout = demo_run
  resumed_at = int(stdout.split("resuming at step ")[1].split()[0])
  assert 1 <= resumed_at < NUM_STEPS
  assert report["step"] == NUM_STEPS and (workdir / demo_report.REPORT).is_file()
  from asva_jax.training.metrics_log import read_metrics
  assert [m["step"] for m in read_metrics(workdir)] == list(range(1, NUM_STEPS + 1))


def test_outputs_exist_and_report_is_well_formed(demo_run):
  workdir, report, _ = demo_run
  on_disk = json.loads((workdir / demo_report.REPORT).read_text())
  assert on_disk == json.loads(json.dumps(report))
  assert report["num_clips"] == 2 == len(report["clips"])
  for key in ("true_audio", "shuffled_audio"):
    values = [c[key] for c in report["clips"]]
    assert all(0 <= v <= 11 for v in values)
    assert report[key] == pytest.approx(np.mean(values))
  assert report["real_videos"]["true_audio"] == 0.0
  assert report["weights"] == "ema"  # a run with EMA weights is sampled with them
  noise = report["sample_noise"]
  assert 0 < noise["static_fraction"] <= 1
  for figure in ("frame_change", "static_change"):
    assert set(noise[figure]) == {"real", "own_audio", "shuffled_audio"}
    assert all(v >= 0 for v in noise[figure].values())
  assert report["step"] == NUM_STEPS
  assert report["sampler"]["prediction_type"] == "v_prediction"  # the workdir tells the sampler
  for clip in report["clips"]:
    assert clip["event_frames"] and all(1 <= f <= 11 for f in clip["event_frames"])
    assert clip["shuffled_audio_from"] != clip["clip"]
    for path in clip["videos"].values():
      with av.open(str(workdir / path)) as container:
        assert container.streams.video[0].frames == 12
        assert container.streams.audio[0].codec_context.name == "aac"
  with Image.open(workdir / report["gif"]) as gif:
    assert gif.n_frames == 12
  with Image.open(workdir / report["plot"]) as png:
    assert png.format == "PNG"


def test_rerun_resumes_from_the_checkpoint_and_rewrites_report(demo_run, capsys):
  workdir, first, _ = demo_run
  (workdir / demo_report.REPORT).unlink()
  second = run_demo(tiny_demo_config(NUM_STEPS), workdir)
  assert f"resuming at step {NUM_STEPS} of {NUM_STEPS}" in capsys.readouterr().out
  assert second["step"] == NUM_STEPS
  assert json.loads((workdir / demo_report.REPORT).read_text())["clips"] == json.loads(json.dumps(first))["clips"]
  from asva_jax.training.metrics_log import read_metrics
  assert [m["step"] for m in read_metrics(workdir)] == list(range(1, NUM_STEPS + 1))


def test_export_of_a_v_prediction_workdir_names_its_scheduler(demo_run, tmp_path):
  """The exported UNet predicts v: the folder carries a scheduler config that says so."""
  from diffusers import DDIMScheduler
  from convert import to_pytorch
  workdir, _, _ = demo_run
  with pytest.raises(SystemExit) as e:
    to_pytorch.run(["to_pytorch", f"--ckpt={workdir}", f"--out={tmp_path}"])
  assert not e.value.code
  assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
  scheduler = DDIMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
  assert scheduler.config.prediction_type == "v_prediction"
  assert scheduler.config.beta_end == demo_config.get_config().diffusion.beta_end


def test_gif_rows_take_every_class_in_turn():
  from types import SimpleNamespace
  clips = [SimpleNamespace(prompt=p) for p in "aaabbc"]
  assert demo_report.gif_rows(clips, 4) == [0, 3, 5, 1]
  assert demo_report.gif_rows(clips, 10) == [0, 3, 5, 1, 4, 2]


# --- the report's bookkeeping, with known events and stand-in samplers --------------------------

PROMPTS = ["a", "a", "a", "b", "b"]
EVENTS = [2, 5, 9, 3, 8]            # each clip's one event (frame index)
PARTNERS = [1, 2, 0, 4, 3]          # the next clip of the same class, by hand
START = 0.25


def known_clips() -> list:
  """Five clips, one event each: a square appears at the event frame (a step in the picture, so the
  change energy has one peak there), and the audio is a noise burst starting at that frame's time."""
  rng = np.random.default_rng(0)
  times = START + np.arange(12) / 6
  clips = []
  for i, (prompt, event) in enumerate(zip(PROMPTS, EVENTS)):
    audio = np.zeros(32000, np.float32)
    at = int(round((times[event] - START) * 16000))
    audio[at:at + 3200] = 0.5 * rng.standard_normal(3200)
    clips.append(demo_report.HeldOutClip(
        name=f"clip{i}", key=f"{prompt}/clip{i}.mp4", prompt=prompt,
        frames=render(np.full((16, 16, 3), 40 * i, np.uint8), event), audio=audio, frame_times=times,
        start=START, events=np.array([event])))
  return clips


def render(image: np.ndarray, event: int) -> np.ndarray:
  frames = np.repeat(image[None], 12, axis=0)
  frames[event:, 4:12, 4:12] = 255
  return frames


def stand_in_sampler(clips, follows_audio: bool):
  """sample_batched for a model that moves at the events of the audio it is given (or, with
  follows_audio=False, at its own clip's events whatever the audio)."""
  def sample_batched(models, inputs, **options):
    out = []
    for c in inputs:
      image_of = next(i for i, k in enumerate(clips) if np.array_equal(k.frames[0], c.image))
      audio_of = next(i for i, k in enumerate(clips) if np.array_equal(k.audio, c.audio))
      out.append(render(c.image, EVENTS[audio_of if follows_audio else image_of]))
    return np.stack(out)
  return sample_batched


@pytest.mark.parametrize("follows_audio", [True, False])
def test_report_scores_each_sample_against_the_right_events(tmp_path, monkeypatch, follows_audio):
  """Own samples against their own events; shuffled samples against the clip's events (far when the
  motion follows the other audio) and against the events of the audio that drove them (near)."""
  from types import SimpleNamespace
  import asva_jax.pipeline
  clips = known_clips()
  monkeypatch.setattr(demo_report, "held_out_clips", lambda *args: clips)
  monkeypatch.setattr(asva_jax.pipeline, "sample_batched", stand_in_sampler(clips, follows_audio))
  models = SimpleNamespace(spec=SimpleNamespace(prediction_type="epsilon"), step=0)
  report = demo_report.write_demo_outputs(tiny_demo_config(1), tmp_path, models=models)
  apart = [abs(EVENTS[p] - e) for e, p in zip(EVENTS, PARTNERS)]   # 3, 4, 7, 5, 5
  own, shuffled, driving = ([0] * 5, apart, [0] * 5) if follows_audio else ([0] * 5, [0] * 5, apart)
  rows = report["clips"]
  assert [r["shuffled_audio_from"] for r in rows] == [clips[p].key for p in PARTNERS]
  assert [r["true_audio"] for r in rows] == own
  assert [r["shuffled_audio"] for r in rows] == shuffled
  assert [r["shuffled_audio_vs_driving_audio"] for r in rows] == driving
  assert (report["true_audio"], report["shuffled_audio"], report["shuffled_audio_vs_driving_audio"]) == (
      pytest.approx(np.mean(own)), pytest.approx(np.mean(shuffled)), pytest.approx(np.mean(driving)))
  assert report["real_videos"] == {"true_audio": 0.0, "shuffled_audio": pytest.approx(np.mean(apart))}
  if follows_audio:  # every sample moves at its conditioning audio's onset: lag 0 is the best lag
    for r in rows:
      assert r["onset_alignment"]["true_audio"]["best_lag"] == 0
      assert r["onset_alignment"]["shuffled_audio"]["best_lag"] == 0
  # Each mp4 carries the audio that conditioned it: its burst starts at that clip's event time.
  from asva_jax.audio.io import load_audio_track
  for r, p, e in zip(rows, PARTNERS, EVENTS):
    for kind, event in (("own_audio", e), ("shuffled_audio", EVENTS[p])):
      track, start = load_audio_track(tmp_path / r["videos"][kind], 16000)
      onset = start + np.argmax(np.abs(track) > 0.1) / 16000
      assert onset == pytest.approx(event / 6, abs=0.03), (r["clip"], kind)


def test_train_with_the_demo_config_only_trains_and_names_the_demo_command(tmp_path, monkeypatch, capsys):
  """`python -m asva_jax.train --config configs/demo.py` is the training run alone; the demo (training,
  then the report) is `python -m asva_jax.demo`, whose --config defaults to configs/demo.py."""
  from asva_jax.commands import demo as demo_command, train as train_command
  from asva_jax.demo import job
  from asva_jax.training import trainer as loop
  calls = []
  monkeypatch.setattr(loop, "train", lambda config, workdir: calls.append(("train", config.seed, workdir)))
  monkeypatch.setattr(job, "run_demo", lambda config, workdir: calls.append(("demo", config.seed, workdir)))
  for command, argv in ((train_command, ["--config", str(ROOT / "configs" / "demo.py")]), (demo_command, [])):
    with pytest.raises(SystemExit) as e:
      command.run(["prog", *argv, f"--workdir={tmp_path}", "--config.seed=5"])
    assert not e.value.code, capsys.readouterr().err
  assert calls == [("train", 5, str(tmp_path)), ("demo", 5, str(tmp_path))]
  assert f"python -m asva_jax.demo --workdir {tmp_path}" in capsys.readouterr().out


def test_sample_noise_measures_flicker_where_the_real_clip_is_still():
  """Hand-made clips: a still grey background with a square that jumps, real videos with codec-like
  flicker of 3 levels, samples with flicker of 20 levels and the same square: the static figure
  gives each flicker exactly, ignores the square's pixels, and the whole-frame figure counts them."""
  from asva_jax.demo.noise import STATIC_THRESHOLD, noise_report
  n, f, h, w = 2, 12, 16, 16
  def clips(flicker: int) -> np.ndarray:
    v = np.full((n, f, h, w, 3), 100, np.int32)
    v[:, 1::2] += flicker  # every pixel alternates between 100 and 100 + flicker
    v[:, 6:, 2:6, 2:6] = 250  # the square appears at frame 6 (moves once)
    return v.astype(np.uint8)
  assert 3 < STATIC_THRESHOLD < 20
  real, samples = clips(3), clips(20)
  report = noise_report(real, {"own_audio": samples, "noisier": clips(40)})
  assert report["static_fraction"] == pytest.approx(1 - 16 / 256)
  assert report["static_change"] == {"real": pytest.approx(3), "own_audio": pytest.approx(20),
                                     "noisier": pytest.approx(40)}
  assert report["static_ratio"]["own_audio"] == pytest.approx(20 / 3)
  assert report["frame_change"]["own_audio"] > 20  # the square's jump counts in the whole frame


def test_plot_title_wraps_inside_the_image_and_keeps_every_character():
  """The demo plot's title is a clip path plus a sentence: it must fit the image, not run off its edge."""
  from PIL import ImageDraw
  from asva_jax.demo import figures
  draw = ImageDraw.Draw(Image.new("RGB", (640, 360)))
  title = "blue_ball_squashing_tone_02/" + "x" * 150 + ".mp4: audio onset envelope vs motion energy of the samples"
  lines = figures._wrap(draw, title, 620)
  assert len(lines) > 1
  assert all(draw.textlength(line) <= 620 for line in lines)
  assert "".join(lines).replace(" ", "") == title.replace(" ", "")
