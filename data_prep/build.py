"""Videos -> ArrayRecord shards readable as a TFDS dataset (`tfds.data_source`) without TensorFlow.

    python -m data_prep.build --dataset avsync15|landscapes|thegreatesthits|folder \\
        --root DIR --split train|test --out DIR [--size H,W] [--image-format jpeg|png] \\
        [--vae-latents CKPT]

Output: `OUT/<name>/1.0.0/` (shards `<name>-<split>.array_record-0000i-of-0000n`,
`features.json`, `dataset_info.json`) and `OUT/summary-<name>-<split>.json` (counts per
class, every skipped file and why). Read it with `tfds.data_source(<name>, data_dir=OUT)` or
`asva_jax.data.open_split(OUT, split)`. OUT may be `gs://BUCKET/...`: ArrayRecordWriter needs a
disk, so the split is built in a local temporary folder (with the bucket's sidecars and
metadata, so finished shards are not rebuilt) and uploaded; training reads the bucket directly.

What a record stores, and why (schema: `asva_jax.data.features`):

* Frames: EVERY decoded frame with its exact timestamp (pts, time base), not frames at 6 fps. The
  loader draws a clip start uniformly in [0, duration - 2] and the original picks
  "the first frame at or after start + k/6" (docs/reference.md §8.3), so any source frame can be
  chosen; storing all frames with their times reproduces the original selection
  exactly for every start (`asva_jax.data.clips.select_frames`). Pre-selecting 6-fps
  frames would quantise the start to 1/6 s and change which frames are paired with
  which audio. Cost: a 10-s 25-fps clip at 256 x 256 is ~250 JPEGs, 2-6 MB per record.
* Frames are cropped to the target aspect ratio and resized with antialiased bilinear
  interpolation (torch, as torchvision) once, here, then rounded to uint8: the
  original resizes in float every time and never rounds (difference <= 0.5/255 plus
  the codec's).
* JPEG quality 95 with 4:4:4 chroma by default: on a 256 x 256 natural image it is 2-3x
  smaller than PNG (58 KB vs 131-140 KB), decodes 3x faster (0.75 ms vs 2.2-2.5 ms; 12
  per clip) and encodes 8-18x faster; its error (mean |d| ~ 2/255) is below that of the
  H.264 sources. `--image-format png` stores lossless frames.
* Audio: the whole track at 16 kHz, mono as the mean of the channels (a correct
  downmix). The original reads each packet's (samples, channels) array with a reshape
  to (channels, samples), so for stereo its "channel 0" interleaves samples of both
  channels from the first half of each packet; not reproduced. The time of the track's
  first sample on the frames' time axis is stored too (`audio_start`: audio streams often
  start later or earlier than the video, e.g. AAC priming, edit lists), and the loader
  slices `[floor((start - audio_start) * 16000), +32000)` (zeros before the audio begins),
  where the original collects whole ~20-ms packets whose timestamp lies in
  [start, start + 2] and centre-crops: alignment differs by at most one packet.
* `--vae-latents CKPT` (a converted checkpoint, `CKPT/vae/`): also the VAE posterior
  moments (mean, logvar; float16, (T, H/8, W/8, 4)) of every stored frame and of its
  mirror image, computed from the frames as stored (see `data_prep.latents` for the
  [-1, 1] mapping and how it differs from the original). The VAE runs in this process
  while the workers decode; ~32 KB per frame at 256 x 256.
* Durations from the stream headers (the original's `min(video, audio)` metadata rule),
  stored as float32 (tf.train.Example has no float64; timestamps are int64, so exact).
  They are lengths, not end times, as in the original: when the streams start at
  different times a clip may reach past the end of one of them (audio: a shorter
  window, padded by the log-mel; video: the last frame repeated).

Bad input never stops the build: a listed file that is missing, a corrupt or
truncated mp4, no audio or no video stream, a clip shorter than 2 s, or a file whose
decoding kills its worker process (a crash in FFmpeg, the OOM killer; the videos then
in flight are decoded again one at a time, so only the culprit is skipped) is skipped
and reported with its reason (console, shard sidecar, summary); the exit status is 0, or 2
when no listed video at all could be used (an empty split is an error, not a result).

Videos are decoded in parallel processes; a shard (a fixed, contiguous run of the
listed videos; training lists are first shuffled with a fixed seed so every shard,
and so every host's part, mixes classes) is written under a temporary name and
renamed when complete, followed by a `.json` sidecar that marks it finished. A
rerun with the same settings skips finished shards.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from asva_jax.commands import runner
from asva_jax.storage import write_json_atomic
from asva_jax.data import features as features_lib
from asva_jax.data.errors import DataError
from asva_jax.storage import check_bucket, is_remote, staged
from data_prep import sources, workers
from data_prep.decode import SkipVideo, decode_video, encode_image


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  dataset: str
  root: str
  split: str
  out: str
  size: tuple[int, int]
  name: str
  image_format: str = "jpeg"
  jpeg_quality: int = 95
  videos_per_shard: int = 64
  shuffle_seed: int | None = 0
  vae_latents: str | None = None

  @property
  def version_dir(self) -> Path:
    return Path(self.out) / self.name / features_lib.VERSION

  def settings(self) -> dict:
    """What must not change between a run and its resumption."""
    keys = ("dataset", "split", "size", "image_format", "jpeg_quality", "videos_per_shard",
            "shuffle_seed", "vae_latents")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
            if k in keys}


def shard_path(config: BuildConfig, index: int, count: int) -> Path:
  name = features_lib.FILENAME_TEMPLATE.format(
      DATASET=config.name, SPLIT=config.split, FILEFORMAT="array_record",
      SHARD_X_OF_Y=f"{index:05d}-of-{count:05d}")
  return config.version_dir / name


def sidecar_path(config: BuildConfig, index: int, count: int) -> Path:
  """The shard's `.json` sidecar: written last, so its presence marks the shard finished."""
  path = shard_path(config, index, count)
  return path.with_name(path.name + ".json")


def is_shard(relative_path: str) -> bool:
  """An ArrayRecord shard (not its sidecar): what a staged `gs://` --out need not download."""
  return ".array_record-" in relative_path and not relative_path.endswith(".json")


def summary_path(config: BuildConfig) -> Path:
  """`OUT/summary-<name>-<split>.json`: named by dataset too, so datasets sharing an --out keep theirs."""
  return Path(config.out) / f"summary-{config.name}-{config.split}.json"


@functools.lru_cache(maxsize=4)
def _features(class_names: tuple[str, ...], vae: bool):
  return features_lib.make_features(list(class_names), vae_latents=vae)


def process_video(entry: sources.VideoEntry, config: BuildConfig,
                  class_names: tuple[str, ...]) -> dict:
  """One video -> {"key", "class_folder", "record" (serialized bytes)} or {"key", "path", "reason"}.

  With `config.vae_latents` the unserialized "example" is returned instead of "record":
  the VAE runs once, in the main process (`_add_vae_moments`), not in every worker.
  """
  try:
    video = decode_video(entry.path, config.size)
    example = {
        "key": entry.key, "source_path": entry.path, "class_folder": entry.class_folder,
        "prompt": entry.prompt, "label": class_names.index(entry.class_folder),
        "frames": [encode_image(f, config.image_format, config.jpeg_quality) for f in video.frames],
        "frame_pts": video.frame_pts, "time_base": np.asarray(video.time_base, np.int64),
        "audio": video.audio, "audio_start": video.audio_start,
        "video_duration": video.video_duration, "audio_duration": video.audio_duration,
        "duration": min(video.video_duration, video.audio_duration),
        "height": config.size[0], "width": config.size[1],
        "source_height": video.source_height, "source_width": video.source_width,
        "source_fps": video.source_fps,
    }
    if config.vae_latents:
      return {"key": entry.key, "class_folder": entry.class_folder, "example": example}
    record = _features(class_names, False).serialize_example(example)
    return {"key": entry.key, "class_folder": entry.class_folder, "record": record}
  except SkipVideo as e:
    return {"key": entry.key, "path": entry.path, "reason": str(e)}
  except Exception as e:  # noqa: BLE001 - an unexpected decoder failure must not stop the build
    return {"key": entry.key, "path": entry.path, "reason": f"unexpected error: {type(e).__name__}: {e}"}


def _add_vae_moments(result: dict, encoder, class_names: tuple[str, ...]) -> dict:
  """Encodes the frames *as stored* (decoded from their bytes like the loader does, so the
  moments match the pixels training would see) and serializes the record."""
  if "example" not in result:
    return result
  from asva_jax.data.transforms import decode_image
  example = dict(result.pop("example"))
  frames = np.stack([decode_image(b) for b in example["frames"]])
  example.update(encoder(frames))
  result["record"] = _features(class_names, True).serialize_example(example)
  return result


def _init_worker() -> None:
  try:
    import torch
    torch.set_num_threads(1)
  except ImportError:
    pass


def _crashed(entry: sources.VideoEntry, how: str) -> dict:
  return {"key": entry.key, "path": entry.path, "reason": f"decoder process crashed ({how})"}


def _ordered_results(tasks, config, class_names, num_workers, process=process_video):
  """Yields `process` (process_video) results in task order, decoding up to `num_workers`
  videos at once.

  A video whose decoder takes its process down is skipped with the reason "decoder
  process crashed (...)" and the others are still decoded (`data_prep.workers`). With
  `num_workers=0` (in this process) nothing guards against that.
  """
  if num_workers <= 0:
    for entry in tasks:
      yield process(entry, config, class_names)
    return
  fn = functools.partial(process, config=config, class_names=class_names)
  yield from workers.ordered_map(fn, tasks, num_workers, on_crash=_crashed, initializer=_init_worker)


def _write_shard(config: BuildConfig, index: int, count: int, results: list[dict]) -> dict:
  from array_record.python.array_record_module import ArrayRecordWriter
  path = shard_path(config, index, count)
  tmp = path.with_name(path.name + ".tmp")
  writer = ArrayRecordWriter(str(tmp), "group_size:1")
  written = [r for r in results if "record" in r]
  for r in written:
    writer.write(r["record"])
  writer.close()
  os.replace(tmp, path)
  sidecar = {
      "shard": path.name, "num_examples": len(written), "num_bytes": path.stat().st_size,
      "keys": [r["key"] for r in written], "classes": [r["class_folder"] for r in written],
      "skipped": [{"key": r["key"], "path": r["path"], "reason": r["reason"]}
                  for r in results if "reason" in r],
  }
  write_json_atomic(sidecar_path(config, index, count), sidecar)
  return sidecar


def _check_settings(config: BuildConfig, listing: sources.DatasetListing) -> None:
  path = config.version_dir / f"build-{config.split}.json"
  # The record fields too: finished shards of an older schema must not be mixed with new ones.
  fields = sorted(_features(tuple(listing.class_names), bool(config.vae_latents)).keys())
  settings = dict(config.settings(), class_names=listing.class_names, fields=fields,
                  keys=[e.key for e in listing.entries])
  if path.is_file():
    previous = json.loads(path.read_text())
    if previous != settings:
      changed = sorted(k for k in settings if previous.get(k) != settings[k])
      raise DataError(f"{path}: an earlier build of split {config.split!r} used other settings "
                       f"({', '.join(changed)} differ); use a new --out or delete {config.version_dir}")
  else:
    write_json_atomic(path, settings)


def _write_tfds_metadata(config: BuildConfig, class_names: list[str]) -> list[str]:
  """features.json + dataset_info.json for every split whose shards are all finished.

  Splits built at the same time into one --out (e.g. train and test, by two processes)
  take turns through a lock file, so the last writer's metadata lists every finished
  split; each writes through its own temporary folder.
  """
  import fcntl
  with open(config.version_dir / ".metadata.lock", "a") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX)
    except OSError as e:  # e.g. a network file system without locks: build one split at a time
      logging.warning("%s: no file lock (%s); concurrent builds may drop a split from "
                      "dataset_info.json", lock.name, e)
    return _write_tfds_metadata_locked(config, class_names)


def _write_tfds_metadata_locked(config: BuildConfig, class_names: list[str]) -> list[str]:
  import tensorflow_datasets as tfds
  split_infos, done = [], []
  for build_file in sorted(config.version_dir.glob("build-*.json")):
    split = build_file.stem[len("build-"):]
    settings = json.loads(build_file.read_text())
    if settings["class_names"] != class_names or bool(settings["vae_latents"]) != bool(config.vae_latents):
      raise DataError(f"{build_file}: split {split!r} was built with other classes or features; "
                       f"a TFDS dataset needs one schema for all splits")
    count = _num_shards(len(settings["keys"]), settings["videos_per_shard"])
    split_config = dataclasses.replace(config, split=split)
    sidecars = [sidecar_path(split_config, i, count) for i in range(count)]
    if not all(p.is_file() for p in sidecars):
      continue
    infos = [json.loads(p.read_text()) for p in sidecars]
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=[i["num_examples"] for i in infos],
        num_bytes=sum(i["num_bytes"] for i in infos),
        filename_template=tfds.core.ShardedFileTemplate(
            data_dir=config.version_dir, template=features_lib.FILENAME_TEMPLATE,
            dataset_name=config.name, filetype_suffix="array_record")))
    done.append(split)
  if not split_infos:
    return done
  from tensorflow_datasets.core import dataset_info, file_adapters, splits
  info = dataset_info.DatasetInfo(
      builder=dataset_info.DatasetIdentity(
          name=config.name, version=tfds.core.Version(features_lib.VERSION),
          data_dir=str(config.version_dir), module_name=""),
      features=_features(tuple(class_names), bool(config.vae_latents)),
      description=f"{config.dataset} videos prepared by data_prep.build (see its docstring).")
  info.set_file_format(file_adapters.FileFormat.ARRAY_RECORD)
  info.set_splits(splits.SplitDict(split_infos))
  # Written beside (a folder of its own), then renamed in, so a reader never sees
  # half-written metadata.
  staging = Path(tempfile.mkdtemp(prefix=".metadata-", suffix=".tmp", dir=config.version_dir))
  try:
    info.write_to_directory(staging)
    for item in sorted(staging.iterdir()):
      os.replace(item, config.version_dir / item.name)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return done


def _num_shards(num_videos: int, per_shard: int) -> int:
  return max(1, math.ceil(num_videos / per_shard))


def build(config: BuildConfig, num_workers: int = 0, progress: bool = True,
          process=process_video) -> dict:
  """Builds (or finishes) one split; returns the summary that is also written to the output.

  `process` turns one listed video into a result (`process_video`'s contract); it must be
  picklable by reference for `num_workers > 0` (tests pass one that crashes its worker).
  """
  t0 = time.time()
  listing = sources.list_videos(config.dataset, config.root, config.split)
  if not listing.entries:
    raise sources.DatasetLayoutError(
        f"{Path(config.root).absolute()}: no videos for split {config.split!r} "
        f"({listing.list_file or 'no list file'}); expected {sources.LAYOUTS[config.dataset]}")
  entries = list(listing.entries)
  if config.shuffle_seed is not None and config.split == "train":
    order = np.random.default_rng(config.shuffle_seed).permutation(len(entries))
    entries = [entries[i] for i in order]
  listing = dataclasses.replace(listing, entries=entries)
  encoder = None
  if config.vae_latents:  # a bad checkpoint or frame size fails here, before anything is written
    from data_prep.latents import VaeMoments
    encoder = VaeMoments(config.vae_latents)
    encoder.latent_shape(config.size)
  config.version_dir.mkdir(parents=True, exist_ok=True)
  _check_settings(config, listing)
  class_names = tuple(listing.class_names)
  count = _num_shards(len(entries), config.videos_per_shard)
  shards = [entries[i * config.videos_per_shard:(i + 1) * config.videos_per_shard] for i in range(count)]
  todo = [i for i in range(count) if not sidecar_path(config, i, count).is_file()]
  tasks = [e for i in todo for e in shards[i]]
  logging.info("%s/%s: %d videos in %d shards, %d shards to build", config.dataset, config.split,
               len(entries), count, len(todo))
  bar = tqdm(total=len(tasks), desc=f"{config.name}/{config.split}", unit="video", disable=not progress)
  results = _ordered_results(tasks, config, class_names, num_workers, process)
  for i in todo:
    shard_results = []
    for _ in shards[i]:
      r = next(results)
      if encoder is not None:
        r = _add_vae_moments(r, encoder, class_names)
      if "reason" in r:
        bar.write(f"skipped {r['path']}: {r['reason']}")
      shard_results.append(r)
      bar.update(1)
    _write_shard(config, i, count, shard_results)
  bar.close()
  done = _write_tfds_metadata(config, list(class_names))
  summary = _summary(config, listing, count, time.time() - t0, len(tasks), done)
  write_json_atomic(summary_path(config), summary)
  return summary


def _summary(config, listing, count, elapsed, num_processed, done_splits) -> dict:
  per_class, skipped, num_bytes = Counter(), [], 0
  for i in range(count):
    info = json.loads(sidecar_path(config, i, count).read_text())
    per_class.update(info["classes"])
    skipped.extend(info["skipped"])
    num_bytes += info["num_bytes"]
  return {
      "dataset": config.dataset, "name": config.name, "split": config.split,
      "root": str(Path(config.root).absolute()), "list_file": listing.list_file,
      "data_dir": str(Path(config.out).absolute()), "settings": config.settings(),
      "num_listed": len(listing.entries), "num_written": sum(per_class.values()),
      "num_skipped": len(skipped), "counts_per_class": {c: per_class.get(c, 0) for c in listing.class_names},
      "skipped": skipped, "num_shards": count, "num_bytes": num_bytes,
      "videos_processed_this_run": num_processed, "seconds_this_run": round(elapsed, 3),
      "tfds_splits_ready": done_splits,
  }


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  """Command-line flags (defined only when run as a program, so importing never clashes)."""
  flags.DEFINE_enum("dataset", None, list(sources.DATASETS), "Source layout (docs/reference.md §8.1).",
                    flag_values=fv)
  flags.DEFINE_string("root", None, "Dataset root folder.", flag_values=fv)
  flags.DEFINE_enum("split", "train", ["train", "test"], "Which list to build.", flag_values=fv)
  flags.DEFINE_string("out", None, "Output data_dir (TFDS layout: OUT/<name>/1.0.0/).", flag_values=fv)
  flags.DEFINE_string("name", None, "TFDS dataset name (default: the --dataset value).", flag_values=fv)
  flags.DEFINE_string("size", None, "Frame size H,W (default: 256,256; 128,256 for thegreatesthits).",
                      flag_values=fv)
  flags.DEFINE_enum("image_format", "jpeg", ["jpeg", "png"], "Frame encoding.", flag_values=fv)
  flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality.", flag_values=fv)
  flags.DEFINE_integer("videos_per_shard", 64, "Videos per shard.", flag_values=fv)
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1, "Decoding processes (0: in this process).",
                       flag_values=fv)
  flags.DEFINE_integer("shuffle_seed", 0, "Seed of the fixed shuffle of training lists (-1: keep list order).",
                       flag_values=fv)
  flags.DEFINE_string("vae_latents", None, "Converted checkpoint: also store VAE posterior moments per frame.",
                      flag_values=fv)
  for name in ("image_format", "jpeg_quality", "videos_per_shard", "num_workers", "shuffle_seed",
               "vae_latents"):
    flags.DEFINE_alias(name.replace("_", "-"), name, flag_values=fv)


def parse_size(text: str) -> tuple[int, int]:
  try:
    h, w = (int(v) for v in text.replace("x", ",").split(","))
  except ValueError:
    raise app.UsageError(f"--size {text!r}: expected H,W (e.g. 256,256)") from None
  if h <= 0 or w <= 0:
    raise app.UsageError(f"--size {text!r}: sizes must be positive")
  return h, w


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for flag in ("dataset", "root", "out"):
    if not fv[flag].value:
      raise app.UsageError(f"--{flag} is required (--dataset, --root and --out are)")
  if not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # progress is the bar; warnings still show
  if is_remote(fv.out):
    check_bucket(fv.out, "--out")
  elif Path(fv.out).exists() and not Path(fv.out).is_dir():
    raise app.UsageError(f"--out {fv.out}: exists and is not a folder; choose a folder path")
  if fv.videos_per_shard < 1:
    raise app.UsageError(f"--videos-per-shard {fv.videos_per_shard}: must be at least 1")
  if not 1 <= fv.jpeg_quality <= 100:
    raise app.UsageError(f"--jpeg-quality {fv.jpeg_quality}: must be in 1..100")
  size = parse_size(fv.size) if fv.size else sources.DEFAULT_SIZES[fv.dataset]
  config = BuildConfig(dataset=fv.dataset, root=fv.root, split=fv.split, out=fv.out,
                       size=size, name=fv.name or fv.dataset, image_format=fv.image_format,
                       jpeg_quality=fv.jpeg_quality, videos_per_shard=fv.videos_per_shard,
                       shuffle_seed=None if fv.shuffle_seed < 0 else fv.shuffle_seed,
                       vae_latents=fv.vae_latents)
  if is_remote(fv.out):  # ArrayRecordWriter needs a disk: build in a local copy, then upload
    with staged(fv.out, fetch=lambda name: not is_shard(name)) as local:
      summary = build(dataclasses.replace(config, out=str(local)), num_workers=fv.num_workers)
  else:
    summary = build(config, num_workers=fv.num_workers)  # prints each skipped video as it goes
  line = (f"{summary['name']}/{summary['split']}: {summary['num_written']} written, "
          f"{summary['num_skipped']} skipped (see {summary_path(config)})")
  if summary["num_written"] == 0:
    first = "; ".join(f"{Path(s['path']).name}: {s['reason']}" for s in summary["skipped"][:3])
    more = " ..." if summary["num_skipped"] > 3 else ""
    raise DataError(f"{line}: no listed video could be used ({first}{more}), "
                    f"so the split is empty; fix or replace the videos under "
                    f"{Path(config.root).absolute()}, then rerun with a new --out")
  print(line)


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (see [project.scripts] in pyproject.toml)."""
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
