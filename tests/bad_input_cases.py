"""The bad-input corpus: every command, run on input that is wrong in one way.

tests/test_bad_inputs.py runs each `Case` below in its own subprocess, with a fresh
temporary folder as the working directory (so commands prove they run from anywhere),
and asserts the project's contract for bad input:

  * the exit status is non-zero (`exit_code`, 2 = `asva_jax.commands.runner`'s bad-input status);
  * stderr holds no "Traceback";
  * stderr names the problem: every string of `expect` appears in it (the offending path
    or flag, usually);
  * nothing is left behind: no file or folder appears in the working folder except those
    listed in `may_create` (a complete, valid output the command keeps on purpose), and
    nothing named `*.tmp*` anywhere under it;
  * no file named `PWNED` exists afterwards (the pickled payloads below try to create it).

ADDING A CASE (for a new command, or a new way to be wrong): append a `Case` to `CASES`.

  argv     the command line after `python`: ["-m", "pkg.tool", "--flag", ...]. Tokens may use
           "{tmp}" (the case's working folder), "{data}" (tests/data) and "{repo}" (the
           repository root), replaced literally (JSON braces are safe).
  expect   strings stderr must contain (same placeholders); name the path or flag at fault.
  setup    optional `setup(tmp: Path)` that builds the bad input in the working folder
           before the command runs; reuse the helpers below (`zero_byte`, `text_file`,
           `payload`, `truncated_copy`, ...) so the corpus covers the same kinds everywhere.
  may_create, exit_code   see above.

Keep cases fast: a case should fail on its bad input before any heavy work (the whole
corpus runs in parallel, well under two minutes on two cores).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
UNET = DATA / "unet_tiny_a" / "unet"
IMAGEBIND_PTH = DATA / "imagebind_audio_tiny_a" / "imagebind_audio_branch.pth"
PAYLOAD_TARGET = "PWNED"


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  argv: list[str]
  expect: list[str]
  setup: Callable[[Path], None] | None = None
  may_create: tuple[str, ...] = ()
  exit_code: int = 2


# --- building blocks of bad input ---------------------------------------------------

class _Payload:
  """Unpickling this creates the folder PWNED in the working directory (a stand-in for
  arbitrary code); a loader that only accepts tensors never runs it."""

  def __reduce__(self):
    return (os.mkdir, (PAYLOAD_TARGET,))


def payload(path: Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(pickle.dumps({"weight": _Payload()}))


def zero_byte(path: Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"")


def text_file(path: Path) -> None:
  """A text file under a media or weights name."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("this is not what the name says\n")


def truncated_copy(source: Path, path: Path, fraction: float = 0.5) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  data = source.read_bytes()
  path.write_bytes(data[: int(len(data) * fraction)])


def image_and_audio(tmp: Path) -> None:
  """A valid tmp/x.png and 3 s of tmp/a.wav, so that a command gets past its inputs."""
  import numpy as np
  import soundfile
  from PIL import Image
  Image.new("RGB", (16, 16), (90, 120, 30)).save(tmp / "x.png")
  soundfile.write(tmp / "a.wav", np.zeros(48000, np.float32), 16000)


def unet_folder(tmp: Path, *, config: Callable[[str], str | None] = lambda text: text,
                weights: Callable[[Path], None] | None = None) -> Path:
  """tmp/unet/ with the tiny fixture's config.json edited by `config` (None: no config.json)
  and its weights (or what `weights(path)` writes instead)."""
  folder = tmp / "unet"
  folder.mkdir()
  text = config((UNET / "config.json").read_text())
  if text is not None:
    (folder / "config.json").write_text(text)
  target = folder / "diffusion_pytorch_model.safetensors"
  if weights is None:
    shutil.copy(UNET / target.name, target)
  else:
    weights(target)
  return folder


def component_without_params(tmp: Path) -> None:
  """A checkpoint whose unet/ has its config.json but no Orbax params/."""
  (tmp / "ckpt" / "unet").mkdir(parents=True)
  shutil.copy(UNET / "config.json", tmp / "ckpt" / "unet" / "config.json")


def avsync15_root(tmp: Path, *, mapping: str | None = '{"dog": "a dog barking"}',
                  listing: str = "dog/missing.mp4\n") -> None:
  """tmp/root in the AVSync15 layout, listing videos that need not exist."""
  root = tmp / "root"
  (root / "videos" / "dog").mkdir(parents=True)
  if mapping is not None:
    (root / "class_mapping.json").write_text(mapping)
  (root / "train.txt").write_text(listing)


def unusable_videos(tmp: Path) -> None:
  """A `folder` dataset whose every video is bad: a zero-byte mp4 and a text file named .mp4."""
  zero_byte(tmp / "root" / "dog" / "empty.mp4")
  text_file(tmp / "root" / "dog" / "text.mp4")


def earlier_build_with_other_settings(tmp: Path) -> None:
  avsync15_root(tmp)
  version = tmp / "out" / "avsync15" / "1.0.0"
  version.mkdir(parents=True)
  (version / "build-train.json").write_text(json.dumps({"dataset": "avsync15", "size": [8, 8]}))


def tiny_workdir(tmp: Path) -> None:
  """tmp/w as configs/tiny.py left it (its recorded config.json and run.json)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("configs_tiny", REPO / "configs" / "tiny.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  (tmp / "w").mkdir()
  (tmp / "w" / "config.json").write_text(module.get_config().to_json())
  (tmp / "w" / "run.json").write_text(json.dumps({"format": "asva-jax training workdir", "version": 1}))


def bad_run_spec(tmp: Path) -> None:
  """A converted folder whose run_spec.json names an unknown prediction type."""
  from asva_jax import run_spec
  component_without_params(tmp)
  (tmp / "ckpt" / run_spec.SPEC_FILE).write_text(json.dumps({**run_spec.recipe().to_json(),
                                                             "prediction_type": "sample"}))


def workdir_without_spec_or_shards(tmp: Path) -> None:
  """A workdir written before the run spec (run.json version 1) whose shards are gone."""
  from asva_jax.training.defaults import base_config
  image_and_audio(tmp)
  (tmp / "w").mkdir()
  (tmp / "w" / "run.json").write_text(json.dumps({
      "format": "asva-jax training workdir", "version": 1, "checkpoint": "", "autoencoder": "space_to_depth",
      "space_to_depth_factor": 4, "scaling_factor": 1.0}))
  config = base_config()
  config.data.dir = "nodata"
  (tmp / "w" / "config.json").write_text(config.to_json())


def shards_without_test_split(tmp: Path) -> None:
  """tmp/data: the metadata of shards from data_prep.build that hold a train split only; a checkpoint
  folder tmp/ck and a --models folder m/ with a (placeholder) FID Inception file, to get that far."""
  from asva_jax.data.features import VERSION, make_features
  folder = tmp / "data" / "avsync15" / VERSION
  folder.mkdir(parents=True)
  make_features(["dog"]).save_config(str(folder))
  split = {"name": "train", "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
           "shardLengths": ["1"], "numBytes": "1"}
  (folder / "dataset_info.json").write_text(json.dumps({"name": "avsync15", "fileFormat": "array_record",
                                                        "version": VERSION, "splits": [split]}))
  (tmp / "ck").mkdir()
  text_file(tmp / "m" / "inception.safetensors")


def _mkdir(*names: str) -> Callable[[Path], None]:
  return lambda tmp: [(tmp / n).mkdir(parents=True) for n in names]


def _file(name: str) -> Callable[[Path], None]:
  return lambda tmp: text_file(tmp / name)


def _both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
  return lambda tmp: [step(tmp) for step in steps]


FROM = ["-m", "convert.from_pytorch"]
TO = ["-m", "convert.to_pytorch"]
BUILD = ["-m", "data_prep.build", "--num-workers", "0"]
SYNTH = ["-m", "data_prep.synthetic"]
TRAIN = ["-m", "asva_jax.train"]
DEMO = ["-m", "asva_jax.demo", "--workdir", "w"]   # --config: configs/demo.py by default
RECIPE = TRAIN + ["--config", "{repo}/configs/avsyncd.py", "--workdir", "w"]
TINY = TRAIN + ["--config", "{repo}/configs/tiny.py", "--workdir", "w"]
APP = ["-m", "asva_jax.app"]
SAMPLE = ["-m", "asva_jax.sample", "--category", "dog barking", "--out", "o.mp4"]
EVAL = ["-m", "asva_jax.eval"]
SYNC = ["-m", "asva_jax.eval.sync"]
PROTOCOL = ["-m", "asva_jax.eval.protocol", "--out", "o", "--metrics", "fid"]
TINY_HEADS = ["--audio-config", '{"num_heads": 4}']

CASES: list[Case] = [
    # convert.from_pytorch
    Case("imagebind-heads-unknown", FROM + ["--imagebind", str(IMAGEBIND_PTH), "--out", "out"],
         [str(IMAGEBIND_PTH), "--audio-config", "num_heads"]),
    Case("imagebind-wrong-blocks", FROM + ["--imagebind", str(IMAGEBIND_PTH), "--audio-config",
                                           '{"num_heads": 4, "num_blocks": 3}', "--out", "out"],
         [str(IMAGEBIND_PTH), "missing", "audio.blocks.2"]),
    Case("imagebind-zero-byte", FROM + ["--imagebind", "w.pth", "--out", "out"] + TINY_HEADS, ["w.pth"],
         setup=lambda tmp: zero_byte(tmp / "w.pth")),
    Case("imagebind-text-file", FROM + ["--imagebind", "w.pth", "--out", "out"] + TINY_HEADS, ["w.pth"],
         setup=_file("w.pth")),
    Case("imagebind-truncated", FROM + ["--imagebind", "w.pth", "--out", "out"] + TINY_HEADS, ["w.pth"],
         setup=lambda tmp: truncated_copy(IMAGEBIND_PTH, tmp / "w.pth")),
    Case("imagebind-pickled-payload", FROM + ["--imagebind", "w.pth", "--out", "out"] + TINY_HEADS,
         ["w.pth", "tensors-only"], setup=lambda tmp: payload(tmp / "w.pth")),
    Case("imagebind-is-a-folder", FROM + ["--imagebind", "dir", "--out", "out"], ["--imagebind dir", "folder"],
         setup=_mkdir("dir")),
    Case("imagebind-missing", FROM + ["--imagebind", "nope.pth", "--out", "out"], ["--imagebind nope.pth"]),
    Case("audio-config-bad-json", FROM + ["--imagebind", str(IMAGEBIND_PTH), "--audio-config", "{heads",
                                          "--out", "out"], ["--audio_config {heads"]),
    Case("audio-config-bad-json-new-spelling", FROM + ["--imagebind", str(IMAGEBIND_PTH), "--audio_config",
                                                       "{heads", "--out", "out"], ["--audio_config {heads"]),
    Case("text-encodings-missing", FROM + ["--text-encodings", "nope.pt", "--out", "out"],
         ["--text_encodings", "nope.pt"]),
    Case("text-encodings-missing-new-spelling", FROM + ["--text_encodings", "nope.pt", "--out", "out"],
         ["--text_encodings", "nope.pt"]),
    Case("out-is-a-file", FROM + ["--imagebind", str(IMAGEBIND_PTH), "--out", "taken"] + TINY_HEADS,
         ["--out taken"], setup=_file("taken")),
    Case("out-unwritable", FROM + ["--imagebind", str(IMAGEBIND_PTH), "--out", "taken/out"] + TINY_HEADS,
         ["taken"], setup=_file("taken")),
    Case("unet-no-config", FROM + ["--unet", "unet", "--out", "out"], ["config.json", "unet"],
         setup=lambda tmp: unet_folder(tmp, config=lambda text: None)),
    Case("unet-corrupt-config", FROM + ["--unet", "unet", "--out", "out"], ["unet/config.json", "JSON"],
         setup=lambda tmp: unet_folder(tmp, config=lambda text: text[: len(text) // 2])),
    Case("unet-truncated-safetensors", FROM + ["--unet", "unet", "--out", "out"],
         ["diffusion_pytorch_model.safetensors"],
         setup=lambda tmp: unet_folder(tmp, weights=lambda p: truncated_copy(UNET / p.name, p))),
    Case("unet-zero-byte-weights", FROM + ["--unet", "unet", "--out", "out"],
         ["diffusion_pytorch_model.safetensors"], setup=lambda tmp: unet_folder(tmp, weights=zero_byte)),
    Case("unet-no-weights", FROM + ["--unet", "unet", "--out", "out"], ["unet", "no weights file"],
         setup=lambda tmp: unet_folder(tmp, weights=lambda p: None)),
    Case("unet-pickled-payload", FROM + ["--unet", "unet", "--out", "out"], ["diffusion_pytorch_model.bin"],
         setup=lambda tmp: unet_folder(
             tmp, weights=lambda p: payload(p.with_name("diffusion_pytorch_model.bin")))),
    Case("unet-shape-mismatch", FROM + ["--unet", "unet", "--out", "out"],
         ["diffusion_pytorch_model.safetensors", "wrong shape"],
         setup=lambda tmp: unet_folder(tmp, config=lambda text: text.replace(
             '"cross_attention_dim": 24', '"cross_attention_dim": 32'))),
    Case("unet-is-a-file", FROM + ["--unet", "w.safetensors", "--out", "out"], ["--unet w.safetensors"],
         setup=_file("w.safetensors")),
    Case("sd15-incomplete", FROM + ["--sd15", "sd", "--out", "out"], ["--sd15 sd", "vae/"],
         setup=_mkdir("sd/unet")),
    Case("misspelt-flag", FROM + ["--imagebnd", "x", "--out", "out"], ["imagebnd"]),
    Case("nothing-to-convert", FROM + ["--out", "out"], ["nothing to convert"]),
    # convert.to_pytorch
    Case("ckpt-empty", TO + ["--ckpt", "ckpt", "--out", "out"], ["--ckpt ckpt"], setup=_mkdir("ckpt")),
    Case("ckpt-missing", TO + ["--ckpt", "nope", "--out", "out"], ["--ckpt nope"]),
    Case("ckpt-component-folder", TO + ["--ckpt", "ckpt/unet", "--out", "out"],
         ["--ckpt ckpt/unet", "component", "--components unet"], setup=component_without_params),
    Case("ckpt-component-lacks-params", TO + ["--ckpt", "ckpt", "--out", "out"], ["ckpt/unet/params"],
         setup=component_without_params),
    Case("ckpt-corrupt-config", TO + ["--ckpt", "ckpt", "--out", "out"], ["ckpt/unet/config.json"],
         setup=lambda tmp: [(tmp / "ckpt" / "unet").mkdir(parents=True),
                            (tmp / "ckpt" / "unet" / "config.json").write_text("")]),
    Case("ckpt-lacks-component", TO + ["--ckpt", "ckpt", "--out", "out", "--components", "vae"],
         ["--components", "vae"], setup=component_without_params),
    Case("to-out-is-a-file", TO + ["--ckpt", "ckpt", "--out", "taken"], ["--out taken"],
         setup=_both(component_without_params, _file("taken"))),
    Case("raw-weights-of-a-checkpoint-folder", TO + ["--ckpt", "ckpt", "--out", "out", "--raw_weights"],
         ["--raw_weights", "ckpt is a checkpoint folder"], setup=component_without_params),
    Case("ckpt-bad-run-spec", TO + ["--ckpt", "ckpt", "--out", "out"],
         ["ckpt/run_spec.json", "prediction_type 'sample'"], setup=bad_run_spec),
    # data_prep.synthetic
    Case("synthetic-out-is-a-file", SYNTH + ["--out", "taken"], ["--out taken"], setup=_file("taken")),
    Case("synthetic-out-unwritable", SYNTH + ["--out", "taken/data", "--num-classes", "1",
                                              "--videos-per-class", "1"], ["taken"], setup=_file("taken")),
    Case("synthetic-no-classes", SYNTH + ["--out", "data", "--num-classes", "0"], ["--num-classes 0"]),
    Case("synthetic-bad-value", SYNTH + ["--out", "data", "--fps", "x"], ["--fps"]),
    # data_prep.build
    Case("build-empty-root", BUILD + ["--dataset", "folder", "--root", "root", "--out", "out"],
         ["root", "no videos"], setup=_mkdir("root")),
    Case("build-missing-root", BUILD + ["--dataset", "avsync15", "--root", "nope", "--out", "out"], ["nope"]),
    Case("build-root-is-a-file", BUILD + ["--dataset", "folder", "--root", "taken", "--out", "out"],
         ["taken"], setup=_file("taken")),
    Case("build-no-class-mapping", BUILD + ["--dataset", "avsync15", "--root", "root", "--out", "out"],
         ["root/class_mapping.json"], setup=lambda tmp: avsync15_root(tmp, mapping=None)),
    Case("build-corrupt-class-mapping", BUILD + ["--dataset", "avsync15", "--root", "root", "--out", "out"],
         ["root/class_mapping.json", "JSON"], setup=lambda tmp: avsync15_root(tmp, mapping="{oops")),
    Case("build-no-split-list", BUILD + ["--dataset", "avsync15", "--root", "root", "--split", "test",
                                         "--out", "out"], ["root/test.txt"], setup=avsync15_root),
    Case("build-empty-list", BUILD + ["--dataset", "avsync15", "--root", "root", "--out", "out"],
         ["root", "no videos"], setup=lambda tmp: avsync15_root(tmp, listing="")),
    Case("build-changed-settings", BUILD + ["--dataset", "avsync15", "--root", "root", "--out", "out"],
         ["out/avsync15/1.0.0/build-train.json", "settings"], setup=earlier_build_with_other_settings,
         may_create=("out",)),
    Case("build-every-video-unusable", BUILD + ["--dataset", "folder", "--root", "root", "--out", "out",
                                                "--size", "32,32"],
         ["empty.mp4", "text.mp4", "0 written"], setup=unusable_videos, may_create=("out",)),
    Case("build-out-is-a-file", BUILD + ["--dataset", "avsync15", "--root", "root", "--out", "taken"],
         ["--out taken"], setup=_both(avsync15_root, _file("taken"))),
    Case("build-bad-vae-checkpoint", BUILD + ["--dataset", "avsync15", "--root", "root", "--out", "out",
                                              "--vae-latents", "ckpt"], ["ckpt"],
         setup=_both(avsync15_root, _mkdir("ckpt"))),
    Case("build-bad-size", BUILD + ["--dataset", "folder", "--root", "root", "--out", "out", "--size", "big"],
         ["--size"], setup=_mkdir("root")),
    Case("build-unknown-dataset", BUILD + ["--dataset", "avsync16", "--root", "root", "--out", "out"],
         ["--dataset", "avsync16"]),
    # asva_jax.train and asva_jax.demo (which trains configs/demo.py, then writes its report)
    Case("train-no-config", TRAIN + ["--workdir", "w"], ["--config"]),
    Case("demo-misspelt-config-field", DEMO + ["--config.train.batchsize=3"],
         ["--config.train.batchsize", "batch_size"]),
    Case("demo-config-missing", TRAIN + ["--config", "nope.py", "--workdir", "w"], ["--config nope.py"]),
    Case("demo-config-bad-value", DEMO + ["--config.train.batch_size=two"], ["--config.train.batch_size"]),
    Case("train-batch-not-divisible", DEMO + ["--config.train.batch_size=8", "--config.train.grad_accum=3"],
         ["--config.train.grad_accum=3"]),
    Case("train-ema-decay-out-of-range", DEMO + ["--config.train.ema_decay=1.0"],
         ["--config.train.ema_decay=1.0", "[0, 1)"]),
    Case("demo-ball-radius-zero", DEMO + ["--config.data.synthetic.ball_radius=0"],
         ["--config.data.synthetic.ball_radius=0", "(0, 0.5]"]),
    Case("train-unknown-remat", DEMO + ["--config.remat=sometimes"],
         ["--config.remat='sometimes'", "none, full, auto"]),
    Case("train-unknown-audio-keys", DEMO + ["--config.model.audio_keys=sparse"],
         ["--config.model.audio_keys='sparse'", "gathered"]),
    Case("train-unknown-prediction-type", DEMO + ["--config.diffusion.prediction_type=sample"],
         ["--config.diffusion.prediction_type='sample'", "v_prediction"]),
    Case("train-rerun-with-another-model", TINY + ["--config.model.unet.layers_per_block=2"],
         ["--config.model.unet.layers_per_block: 1 in the workdir, 2 now",
          "restart_from_scratch"], setup=tiny_workdir),
    Case("train-distributed-off-a-pod", DEMO + ["--distributed"], ["--distributed", "--coordinator_address"]),
    Case("train-no-data", RECIPE, ["--config.data.dir", "data_prep.build"]),
    Case("train-data-missing", RECIPE + ["--config.data.dir=nodata"], ["--config.data.dir=nodata"]),
    Case("train-data-empty", RECIPE + ["--config.data.dir=empty_shards"],
         ["empty_shards: no dataset", "dataset_info.json"], setup=_mkdir("empty_shards")),
    Case("train-checkpoint-missing", RECIPE + ["--config.data.dir=data", "--config.model.checkpoint=nock"],
         ["--config.model.checkpoint=nock", "convert.from_pytorch"], setup=_mkdir("data")),
    # gs:// paths (tests/test_bad_inputs.py runs the corpus with a GCS emulator that has no buckets)
    Case("train-gs-bucket-missing", TRAIN + ["--config", "{repo}/configs/tiny.py", "--workdir",
                                             "gs://no-such-bucket/run"],
         ["--workdir gs://no-such-bucket/run", "bucket gs://no-such-bucket does not exist"]),
    Case("demo-gs-workdir", ["-m", "asva_jax.demo", "--workdir", "gs://bucket/demo"],
         ["--workdir gs://bucket/demo", "local folder"]),
    Case("train-gs-data-bucket-missing", RECIPE + ["--config.data.dir=gs://no-such-bucket/data"],
         ["--config.data.dir gs://no-such-bucket/data", "does not exist"]),
    Case("build-gs-bucket-missing", BUILD + ["--dataset", "avsync15", "--root", "root", "--out",
                                             "gs://no-such-bucket/data"],
         ["--out gs://no-such-bucket/data", "does not exist"], setup=avsync15_root),
    Case("to-gs-bucket-missing", TO + ["--ckpt", "gs://no-such-bucket/run", "--out", "o"],
         ["--ckpt gs://no-such-bucket/run"]),
    Case("sample-gs-bucket-missing", SAMPLE + ["--ckpt", "gs://no-such-bucket/run", "--image", "x.png",
                                               "--audio", "a.wav"], ["gs://no-such-bucket/run"],
         setup=lambda tmp: image_and_audio(tmp)),
    # asva_jax.sample
    Case("sample-checkpoint-missing", SAMPLE + ["--ckpt", "nock", "--image", "x.png", "--audio", "a.wav"],
         ["nock"], setup=lambda tmp: image_and_audio(tmp)),
    Case("sample-image-missing", SAMPLE + ["--ckpt", "ck", "--image", "x.png", "--audio", "a.wav"], ["x.png"],
         setup=_mkdir("ck")),
    Case("sample-image-is-text", SAMPLE + ["--ckpt", "ck", "--image", "x.png", "--audio", "a.wav"], ["x.png"],
         setup=_both(_mkdir("ck"), _file("x.png"))),
    Case("sample-image-zero-byte", SAMPLE + ["--ckpt", "ck", "--image", "x.png", "--audio", "a.wav"], ["x.png"],
         setup=_both(_mkdir("ck"), lambda tmp: zero_byte(tmp / "x.png"))),
    Case("sample-video-is-folder", SAMPLE + ["--ckpt", "ck", "--video", "v.mp4"], ["v.mp4"],
         setup=_mkdir("ck", "v.mp4")),
    Case("sample-bad-long-audio-mode", SAMPLE + ["--ckpt", "ck", "--long-audio", "sideways"],
         ["long", "sideways"]),
    Case("sample-bad-long-audio-mode-new-spelling", SAMPLE + ["--ckpt", "ck", "--long_audio", "sideways"],
         ["long_audio", "sideways"]),
    Case("sample-bad-num-clips", SAMPLE + ["--ckpt", "ck", "--num-clips", "two"], ["num", "two"]),
    Case("sample-bad-num-clips-new-spelling", SAMPLE + ["--ckpt", "ck", "--num_clips", "two"],
         ["num_clips", "two"]),
    Case("sample-batch-size-zero", SAMPLE + ["--ckpt", "ck", "--image", "x.png", "--audio", "a.wav",
                                             "--batch_size=0"], ["--batch_size 0", ">= 1"]),
    Case("sample-distributed-off-a-pod", SAMPLE + ["--ckpt", "ck", "--image", "x.png", "--audio", "a.wav",
                                                   "--distributed"], ["--distributed", "--coordinator_address"]),
    Case("sample-workdir-spec-underivable", SAMPLE + ["--ckpt", "w", "--image", "x.png", "--audio", "a.wav"],
         ["w/run.json", "frame size", "nodata"], setup=workdir_without_spec_or_shards),
    # asva_jax.eval
    Case("eval-generated-missing", EVAL + ["--generated", "nope", "--reference", "r", "--models", "m"],
         ["--generated nope"]),
    Case("eval-unknown-metric", EVAL + ["--generated", "g", "--reference", "r", "--models", "m",
                                        "--metrics", "fid,speed"], ["speed"], setup=_mkdir("g", "r", "m")),
    # asva_jax.eval.protocol
    Case("protocol-checkpoint-missing", PROTOCOL + ["--ckpt", "nock", "--data", "data", "--models", "m"],
         ["--ckpt nock", "no such checkpoint"]),
    Case("protocol-models-missing", PROTOCOL + ["--ckpt", "ck", "--data", "data", "--models", "nomodels"],
         ["--models nomodels"], setup=_mkdir("ck")),
    Case("protocol-models-without-detector", PROTOCOL + ["--ckpt", "ck", "--data", "data", "--models", "m"],
         ["--models m", "no inception file"], setup=_mkdir("ck", "m")),
    Case("protocol-data-missing", PROTOCOL + ["--ckpt", "ck", "--data", "nodata", "--models", "m"],
         ["nodata", "data_prep.build"], setup=shards_without_test_split),
    Case("protocol-split-missing", PROTOCOL + ["--ckpt", "ck", "--data", "data", "--models", "m"],
         ["split 'test' is not built", "ready: train"], setup=shards_without_test_split),
    Case("protocol-distributed-off-a-pod", PROTOCOL + ["--ckpt", "ck", "--data", "d", "--models", "m",
                                                       "--distributed"], ["--distributed", "--coordinator_address"]),
    Case("protocol-unknown-metric", ["-m", "asva_jax.eval.protocol", "--out", "o", "--ckpt", "ck", "--data", "d",
                                     "--models", "m", "--metrics", "fid,speed"], ["speed"]),
    # asva_jax.eval.sync
    Case("sync-no-video", SYNC, ["VIDEO"]),
    Case("sync-video-missing", SYNC + ["nope.mp4"], ["nope.mp4"]),
    Case("sync-video-is-text", SYNC + ["t.mp4"], ["t.mp4"], setup=_file("t.mp4")),
    Case("sync-video-zero-byte", SYNC + ["v.mp4"], ["v.mp4"], setup=lambda tmp: zero_byte(tmp / "v.mp4")),
    # benchmarks (run as scripts: they are not installed)
    Case("bench-audio-unknown-size", ["{repo}/benchmarks/audio_encoder.py", "--sizes", "giant"], ["--sizes"]),
    Case("bench-cpu-paths-bad-structure", ["{repo}/benchmarks/cpu_paths.py", "--denoise", "scan:half:all"],
         ["--denoise"]),
    Case("bench-cpu-paths-original-missing", ["{repo}/benchmarks/cpu_paths.py", "--part", "original",
                                               "--original", "noasva"], ["--original noasva", "avgen"]),
    Case("bench-unet-bad-batch", ["{repo}/benchmarks/unet_forward.py", "--batch", "two"], ["--batch"]),
    Case("bench-data-bad-size", ["{repo}/benchmarks/data_throughput.py", "--source", "360"], ["--source"]),
    # asva_jax.app (the web app's command; bad uploads are tests/test_app.py's)
    Case("app-checkpoint-missing", APP + ["--ckpt", "nock"], ["nock"]),
    Case("app-bad-steps", APP + ["--ckpt", "ck", "--scheduler", "ddim", "--steps", "0"], ["--steps 0"],
         setup=_mkdir("ck")),
    Case("app-bad-port", APP + ["--ckpt", "ck", "--port", "70000"], ["port", "70000"], setup=_mkdir("ck")),
    Case("bench-tpu-compile-unknown-topology", ["{repo}/benchmarks/tpu_compile.py", "--topology", "v5e:9x9"],
         ["--topology v5e:9x9"]),
    Case("bench-train-step-latents-without-vae", ["{repo}/benchmarks/train_step.py", "--latents"],
         ["--latents", "autoencoder=vae"]),
    # a rerun refuses to overwrite an earlier report
    Case("bench-report-out-holds-a-report", ["{repo}/benchmarks/report.py", "--out", "r"],
         ["--out r", "report.json", "exists"], setup=_both(_mkdir("r"), _file("r/report.json"))),
    Case("bench-report-unknown-section", ["{repo}/benchmarks/report.py", "--sections", "train,speed"],
         ["--sections", "speed"]),
]
