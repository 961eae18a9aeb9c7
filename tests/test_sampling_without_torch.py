"""Sampling needs no PyTorch: `python -m asva_jax.sample` and `pipeline.sample` with every torch
import refused give the same video, byte for byte, as with torch importable (issue 17).

Both runs are subprocesses: a pytest worker may hold torch already. The resize they share is
checked against torch's in tests/test_media_resize.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.sampling_checkpoint import PROMPTS, SIZE, media, tiny_checkpoint

ROOT = Path(__file__).parents[1]

BLOCK_TORCH = '''
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("torch", "torchvision", "torchaudio"):
      raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
    return None
sys.meta_path.insert(0, _NoTorch())
'''

# The CLI run as `python -m` does, then the Python API on an image and a video's first frames.
SAMPLE = '''
import json, runpy, sys
import numpy as np
args = json.loads(sys.argv[1])
sys.argv = ["asva_jax.sample", *args["cli"]]
try:
  runpy.run_module("asva_jax.sample", run_name="__main__", alter_sys=True)
except SystemExit as e:
  assert e.code in (0, None), f"sample exited with {e.code}"
import jax.numpy as jnp
from asva_jax.pipeline import Clip, inputs, load_models, sample
models = load_models(args["ckpt"], dtype=jnp.float32)
size = tuple(args["size"])
image = inputs.prepare_image(inputs.load_image(args["image"]), size)
first = inputs.video_first_frames(args["video"], [0.0], size)[0]
track, _ = inputs.load_audio_track(args["audio"])
audio = inputs.window(track, 0.0)
# One clip per call: the batch size of the CLI run, so its compilation is reused.
frames = [sample(models, [Clip(im, audio, args["prompt"])], seeds=0, num_inference_steps=2)[0]
          for im in (image, first)]
np.save(args["npy"], np.stack(frames))
print("torch imported:", "torch" in sys.modules)
'''


def run_sampling(tmp_path: Path, name: str, block: bool) -> tuple[bytes, np.ndarray, str]:
  files = media(2.0)
  out = tmp_path / f"{name}.mp4"
  args = {"cli": [f"--ckpt={tiny_checkpoint()}", f"--image={files['image']}", f"--audio={files['audio']}",
                  f"--category={PROMPTS[0]}", "--steps=2", "--size=32,32", "--batch-size=1", "--seed=0",
                  f"--out={out}"],
          "ckpt": str(tiny_checkpoint()), "size": list(SIZE), "image": str(files["image"]),
          "video": str(files["video"]), "audio": str(files["audio"]), "prompt": PROMPTS[0],
          "npy": str(tmp_path / f"{name}.npy")}
  code = (BLOCK_TORCH if block else "") + SAMPLE
  result = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return out.read_bytes(), np.load(tmp_path / f"{name}.npy"), result.stdout


def test_sampling_with_torch_blocked_gives_the_same_video(tmp_path):
  blocked_mp4, blocked_frames, blocked_log = run_sampling(tmp_path, "blocked", block=True)
  assert "torch imported: False" in blocked_log
  torch_mp4, torch_frames, _ = run_sampling(tmp_path, "torch", block=False)
  assert blocked_frames.shape == (2, 12) + SIZE + (3,)
  np.testing.assert_array_equal(blocked_frames, torch_frames)
  assert blocked_mp4 == torch_mp4  # single-threaded x264: equal frames give equal bytes


def test_the_blocker_blocks(tmp_path):
  """The test above would prove nothing if the finder let torch through."""
  result = subprocess.run([sys.executable, "-c", BLOCK_TORCH + "import torch"], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode != 0 and "blocked by the test" in result.stderr
