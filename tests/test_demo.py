"""The demo flow at a tiny size: synthetic data with a test split, training from scratch, sampling
every held-out clip with its own and with shuffled audio, the outputs and the report; a rerun
resumes from the run's checkpoint (no training left) and writes the same report again."""

import json

import av
import numpy as np
import pytest
from PIL import Image

from asva_jax.demo import report as demo_report
from configs import demo as demo_config


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
  c.train.num_steps = num_steps
  c.train.batch_size = 2
  c.train.checkpoint_every = 1
  c.train.log_every = 1
  c.log.progress = False
  c.demo.num_inference_steps = 2
  c.demo.batch_size = 2
  return c


def run_demo(config, workdir):
  from asva_jax.demo.run import run
  return run(config, workdir)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("demo")
  first = run_demo(tiny_demo_config(1), workdir)
  return workdir, first


def test_outputs_exist_and_report_is_well_formed(demo_run):
  workdir, report = demo_run
  on_disk = json.loads((workdir / demo_report.REPORT).read_text())
  assert on_disk == json.loads(json.dumps(report))
  assert report["num_clips"] == 2 == len(report["clips"])
  for key in ("true_audio", "shuffled_audio"):
    values = [c[key] for c in report["clips"]]
    assert all(0 <= v <= 11 for v in values)
    assert report[key] == pytest.approx(np.mean(values))
  assert report["real_videos"]["true_audio"] == 0.0
  assert report["step"] == 1
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
  workdir, first = demo_run
  (workdir / demo_report.REPORT).unlink()
  second = run_demo(tiny_demo_config(1), workdir)
  assert "resuming at step 1 of 1" in capsys.readouterr().out
  assert second["step"] == 1
  assert json.loads((workdir / demo_report.REPORT).read_text())["clips"] == json.loads(json.dumps(first))["clips"]
  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in metrics] == [1]


def test_export_of_a_v_prediction_workdir_names_its_scheduler(demo_run, tmp_path):
  """The exported UNet predicts v: the folder carries a scheduler config that says so."""
  from diffusers import DDIMScheduler
  from tests.cli_modules import cli_module
  workdir, _ = demo_run
  from absl import flags

  from asva_jax import command
  with cli_module("convert.to_pytorch") as to_pytorch:  # its flags would clash with other commands'
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit) as e:
      command.run(to_pytorch.main, argv=["to_pytorch", f"--ckpt={workdir}", f"--out={tmp_path}"])
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
