"""`python -m asva_jax.sample --jobs` on 2 real processes (127.0.0.1, gloo CPU collectives): each host
samples and writes its own share of the clips, every clip exactly once, and every video equals the
one a single process writes for the same jobs."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import numpy as np

from asva_jax.commands import sample
from asva_jax.media.video import decode_frames
from tests.sampling_checkpoint import media, tiny_checkpoint
from tests.test_train_sharding import free_port
from tests.training_fixtures import ROOT, subprocess_env

FAST = ["--steps=2", "--size=32,32", "--batch-size=1"]  # test_sample_cli's: one compilation in this process
STARTS = (0.0, 1.0, 2.5)


def write_jobs(path, out_dir) -> list:
  files = media(5.0)
  outs = [out_dir / f"clip{k}.mp4" for k in range(len(STARTS))]
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image", "audio", "category", "out", "start"])
    for k, (s, out) in enumerate(zip(STARTS, outs)):
      w.writerow([files["image"], files["audio"], ("lions roaring", "dog barking")[k % 2], out, s])
  return outs


def test_two_hosts_write_each_clip_once_and_equal_one_process(tmp_path, tmp_path_factory):
  two = write_jobs(tmp_path / "two.csv", tmp_path / "two")
  one = write_jobs(tmp_path / "one.csv", tmp_path / "one")
  port = free_port()
  procs = [subprocess.Popen([sys.executable, "-m", "asva_jax.sample", f"--ckpt={tiny_checkpoint()}", *FAST,
                             f"--jobs={tmp_path / 'two.csv'}", f"--coordinator_address=127.0.0.1:{port}",
                             "--num_processes=2", f"--process_id={i}", "--cpu_collectives=gloo"],
                            cwd=ROOT, env=subprocess_env(tmp_path_factory), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  try:
    sample.run(["sample", f"--ckpt={tiny_checkpoint()}", *FAST, f"--jobs={tmp_path / 'one.csv'}"])
  except SystemExit as e:
    assert not e.code, e
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  written = [re.findall(r"^wrote (\S+)", out, re.M) for out in outs]
  assert sorted(written[0] + written[1]) == sorted(map(str, two))  # every clip once, by one host
  assert len(written[0]) == 1 and len(written[1]) == 2, written
  assert "process 1 of 2: 2 of 3 clip(s)" in outs[1], outs[1]
  for a, b in zip(two, one):
    x, y = decode_frames(a).frames, decode_frames(b).frames
    assert x.shape == y.shape == (12, 32, 32, 3)
    assert np.abs(x.astype(int) - y).mean() < 0.5, a
  assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [p.name for p in two]  # no temporary files left


def test_host_shares_cover_every_item_once():
  from asva_jax.parallel.hosts import share
  for n in range(12):
    for count in range(1, 5):
      parts = [share(list(range(n)), i, count) for i in range(count)]
      assert sorted(sum(parts, [])) == list(range(n)), (n, count)
      assert max(map(len, parts)) - min(map(len, parts)) <= 1, (n, count)
