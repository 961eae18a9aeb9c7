r"""Animate an image with a sound: AVSyncD sampling from the command line.

  python -m asva_jax.sample --ckpt CKPT --image x.png --audio y.wav --category "lions roaring" \
      --audio_guidance 4.0 --text_guidance 1.0 --out o.mp4
  python -m asva_jax.sample --ckpt CKPT --video v.mp4 --category "dog barking" --num_clips 3 --out o.mp4
  python -m asva_jax.sample --ckpt CKPT --jobs jobs.csv          # columns image,audio,category,out[,start]

Every batch is split over all of this machine's devices. Several hosts: run the same command on
each with `--distributed` (TPU pods, SLURM) or `--coordinator_address HOST:PORT --num_processes N
--process_id I`; each host samples and writes its own share of the clips.

CKPT is a converted checkpoint folder or a training workdir (its latest step, or --step).
Audio: with --start (or --num_clips) the original's 2-s clips (one centred clip by default
with --num_clips 1); otherwise the whole audio, window after window (--long_audio), in one mp4.
Writes H.264 at 6 fps with the audio muxed in (AAC); --gif also writes a GIF. The hyphenated
spellings of before (`--audio-guidance`, `--num-clips`, ...) still work.
"""

from __future__ import annotations

from absl import app, flags

from asva_jax.commands import runner
from asva_jax.commands.train import define_distributed_flags, start_processes
from asva_jax.pipeline.jobs import LONG_AUDIO_MODES, SCHEDULERS, SampleOptions

# The spellings documented before issue 17 (README, docs/sampling.md) stay as aliases.
_ALIASES = {"audio_guidance": "audio-guidance", "text_guidance": "text-guidance", "num_clips": "num-clips",
            "batch_size": "batch-size", "long_audio": "long-audio"}


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  def string(name, help_string):
    flags.DEFINE_string(name, None, help_string, flag_values=fv)
  flags.DEFINE_string("ckpt", None, "Converted checkpoint folder or training workdir.", required=True,
                      flag_values=fv)
  flags.DEFINE_integer("step", None, "Training step to load from a workdir (default: the latest).",
                       flag_values=fv)
  string("image", "First frame: any image file.")
  string("audio", "Audio file (anything FFmpeg decodes).")
  string("video", "Video whose frame at the clip start is the image and whose audio is used.")
  string("category", "Category prompt, e.g. 'lions roaring'.")
  flags.DEFINE_float("audio_guidance", 4.0, "Audio classifier-free guidance scale (> 1 enables it).",
                     flag_values=fv)
  flags.DEFINE_float("text_guidance", 1.0, "Text classifier-free guidance scale (> 1 enables it).",
                     flag_values=fv)
  string("out", "Output .mp4 (several clips: OUT_clip-00.mp4, ...).")
  flags.DEFINE_float("start", None, "Start (s) of one 2-s clip.", flag_values=fv)
  flags.DEFINE_integer("num_clips", None, "The original's uniform 2-s clips: centred for 1, linspace(0, d-2, k).",
                       flag_values=fv)
  flags.DEFINE_integer("steps", 50, "Sampler steps (PNDM: 50 steps = 51 UNet calls).", flag_values=fv)
  flags.DEFINE_enum("scheduler", "pndm", list(SCHEDULERS), "Sampler (docs/sampling.md).", flag_values=fv)
  flags.DEFINE_float("eta", 0.0, "DDIM eta.", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed of the initial noise and of the image's posterior sample.",
                       flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of the UNet and the VAE.",
                    flag_values=fv)
  flags.DEFINE_bool("gif", False, "Also write a GIF next to each mp4.", flag_values=fv)
  string("jobs", "CSV with columns image,audio,category,out[,start]; rows run in batches.")
  flags.DEFINE_integer("batch_size", 4, "Clips per batched sampler call (rounded up to a multiple of the devices).",
                       flag_values=fv)
  flags.DEFINE_list("size", None, "Output H,W (default: the frame size in the run spec of --ckpt).",
                    flag_values=fv)
  flags.DEFINE_enum("long_audio", "anchored", list(LONG_AUDIO_MODES),
                    "How windows of a long audio chain: every window from the image, or each from the last frame.",
                    flag_values=fv)
  define_distributed_flags(fv)
  runner.define_aliases(_ALIASES, fv)


def options(fv: flags.FlagValues = flags.FLAGS) -> SampleOptions:
  values = runner.option_values(SampleOptions, fv)
  return SampleOptions(**dict(values, size=tuple(values["size"]) if values["size"] else None))


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  start_processes(fv)
  from asva_jax.pipeline.jobs import run_jobs
  run_jobs(options(fv))


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
