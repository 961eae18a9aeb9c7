"""`python -m asva_jax.sample` end to end on a tiny checkpoint (run in-process, so compilations are
shared), and every bad input as one `error:` line with exit status 2."""

import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from asva_jax.commands import sample
from tests.sampling_checkpoint import media, tiny_checkpoint

ROOT = Path(__file__).parents[1]
FAST = ["--steps=2", "--size=32,32", "--batch-size=1"]


def run(args, capsys):
  """(exit status, stderr) of the CLI run in this process."""
  try:
    sample.run(["sample", f"--ckpt={tiny_checkpoint()}", *FAST, *args])
    code = 0
  except SystemExit as e:
    code = e.code or 0
  return code, capsys.readouterr().err


def probe(path):
  with av.open(str(path)) as c:
    v, a = c.streams.video[0], c.streams.audio[0]
    frames = sum(1 for _ in c.decode(v))
    rate = float(v.average_rate)
  with av.open(str(path)) as c:
    samples = sum(f.samples for f in c.decode(audio=0))
    sr = c.streams.audio[0].rate
  return frames, rate, samples / sr, v.codec_context.name


def test_image_and_audio_to_mp4(tmp_path, capsys):
  files = media(2.0)
  args = [f"--image={files['image']}", f"--audio={files['audio']}", "--category=lions roaring", "--gif"]
  code, err = run(args + [f"--out={tmp_path / 'a.mp4'}"], capsys)
  assert code == 0, err
  frames, fps, seconds, codec = probe(tmp_path / "a.mp4")
  assert frames == 12 and fps == 6 and codec == "h264" and abs(seconds - 2.0) < 0.1
  assert (tmp_path / "a.gif").is_file()
  assert run(args + [f"--out={tmp_path / 'b.mp4'}"], capsys)[0] == 0
  assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()  # same seed, same bytes


def test_video_clips_and_jobs_with_long_audio(tmp_path, capsys):
  video = media(3.0)["video"]
  code, err = run([f"--video={video}", "--category=dog barking", "--num-clips=2", f"--out={tmp_path / 'v.mp4'}"],
                  capsys)
  assert code == 0, err
  for k in range(2):
    frames, _, seconds, _ = probe(tmp_path / f"v_clip-{k:02d}.mp4")
    assert frames == 12 and abs(seconds - 2.0) < 0.1
  short, long = media(2.0), media(5.0)
  jobs = tmp_path / "jobs.csv"
  jobs.write_text("image,audio,category,out\n"
                  f"{short['image']},{short['audio']},lions roaring,{tmp_path / 'j0.mp4'}\n"
                  f"{long['image']},{long['audio']},dog barking,{tmp_path / 'j1.mp4'}\n")
  code, err = run([f"--jobs={jobs}", "--long-audio=continuous"], capsys)
  assert code == 0, err
  assert probe(tmp_path / "j0.mp4")[0] == 12
  frames, _, seconds, _ = probe(tmp_path / "j1.mp4")
  assert frames == 30 and abs(seconds - 5.0) < 0.1  # the whole audio, window after window


def test_a_clip_a_little_longer_than_2_s(tmp_path, capsys):
  """A 2.2-s video as a new user gives it: 13 frames with the whole audio, the last one continuing the
  video (before: a second anchored window whose one frame was the input image again)."""
  video = media(2.2)["video"]
  code, err = run([f"--video={video}", "--category=dog barking", f"--out={tmp_path / 'v.mp4'}"], capsys)
  assert code == 0, err
  frames, _, seconds, _ = probe(tmp_path / "v.mp4")
  assert frames == 13 and abs(seconds - 2.2) < 0.1
  with av.open(str(tmp_path / "v.mp4")) as c:
    decoded = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
  assert np.abs(decoded[12] - decoded[0]).mean() > 1  # not the first frame again


def test_bad_inputs_get_one_line(tmp_path, capsys):
  files, short = media(2.0), media(1.0)
  (tmp_path / "bad.png").write_bytes(b"not an image")
  (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
  out = f"--out={tmp_path / 'o.mp4'}"
  ok = dict(image=files["image"], audio=files["audio"], category="lions roaring")
  cases = {
      "missing.png: no such image": dict(ok, image=tmp_path / "missing.png"),
      "bad.png: unreadable or corrupt image": dict(ok, image=tmp_path / "bad.png"),
      "bad.wav: unreadable or corrupt": dict(ok, audio=tmp_path / "bad.wav"),
      "lasts 1.0": dict(ok, audio=short["audio"]),
      "unknown category 'unicorns'": dict(ok, category="unicorns"),
  }
  for expected, case in cases.items():
    code, err = run([f"--{k}={v}" for k, v in case.items()] + [out], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and expected in err, (expected, err)
  assert not (tmp_path / "o.mp4").exists()


def test_missing_checkpoint_in_a_real_process(tmp_path):
  files = media(2.0)
  result = subprocess.run(
      [sys.executable, "-m", "asva_jax.sample", f"--ckpt={tmp_path / 'nope'}", f"--image={files['image']}",
       f"--audio={files['audio']}", "--category=x", f"--out={tmp_path / 'o.mp4'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such checkpoint folder or "
                                                "training workdir"]


def test_old_and_new_flag_spellings_give_the_same_options():
  """The hyphenated spellings of before are aliases of the underscore flags (one spelling, as `eval`)."""
  from absl import flags
  parsed = []
  for spelling in ("-", "_"):
    fv = flags.FlagValues()
    sample.define_flags(fv)
    fv(["sample", "--ckpt=c", *(f"--{name.replace('_', spelling)}={value}" for name, value in (
        ("audio_guidance", "2.5"), ("text_guidance", "1.5"), ("num_clips", "3"), ("batch_size", "2"),
        ("long_audio", "continuous")))])
    parsed.append(sample.options(fv))
  assert parsed[0] == parsed[1]
  assert (parsed[0].audio_guidance, parsed[0].text_guidance, parsed[0].num_clips, parsed[0].batch_size,
          parsed[0].long_audio) == (2.5, 1.5, 3, 2, "continuous")
