r"""A web page that animates an image with a sound, on any converted checkpoint or training workdir.

  python -m asva_jax.app --ckpt outputs/demo                 # after `make demo`: its held-out clips as examples
  python -m asva_jax.app --ckpt CKPT --share                 # Colab: a public gradio.live link
  python -m asva_jax.app --ckpt CKPT --host 0.0.0.0 --port 7860

The models are loaded and compiled once at start-up (one sample with the default settings), so a
request with those settings compiles nothing. Needs the `app` extra (`pip install -e '.[app]'`).
docs/app.md.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket

from absl import app, flags, logging

from asva_jax.commands import runner
from asva_jax.errors import AsvaError
from asva_jax.pipeline.jobs import SCHEDULERS


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_string("ckpt", None, "Converted checkpoint folder or training workdir.", required=True,
                      flag_values=fv)
  flags.DEFINE_integer("step", None, "Training step to load from a workdir (default: the latest).", flag_values=fv)
  flags.DEFINE_string("host", "127.0.0.1", "Address to serve on (0.0.0.0: every interface).", flag_values=fv)
  flags.DEFINE_integer("port", 7860, "Port to serve on.", lower_bound=1, upper_bound=65535, flag_values=fv)
  flags.DEFINE_bool("share", False, "Also serve through a public gradio.live link (Colab).", flag_values=fv)
  flags.DEFINE_string("max_upload", "50mb", "Largest upload accepted (e.g. 50mb, 1gb).", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of the UNet and the VAE.",
                    flag_values=fv)
  flags.DEFINE_bool("warmup", True, "Compile at start-up by sampling once with the default settings.",
                    flag_values=fv)
  # Defaults of the page (and of the start-up compilation); a demo workdir's own settings otherwise.
  flags.DEFINE_enum("scheduler", None, list(SCHEDULERS), "Default sampler (default: pndm, or the demo's).",
                    flag_values=fv)
  flags.DEFINE_integer("steps", None, "Default sampler steps (default: 50, or the demo's).", flag_values=fv)
  flags.DEFINE_float("audio_guidance", None, "Default audio guidance (default: 4.0, or the demo's).", flag_values=fv)
  flags.DEFINE_float("text_guidance", None, "Default text guidance (default: 1.0, or the demo's).", flag_values=fv)


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import dataclasses

  import jax.numpy as jnp

  from asva_jax.app.examples import demo_examples
  from asva_jax.app.session import Settings, Studio, settings_from_config
  from asva_jax.pipeline import load_models
  from asva_jax.schedulers import SchedulerError, make_plan

  def check_plan(s: Settings) -> None:
    try:
      make_plan(s.scheduler, s.steps)
    except SchedulerError as e:
      raise AsvaError(f"--scheduler {s.scheduler} --steps {s.steps}: {e}") from e

  if importlib.util.find_spec("gradio") is None:
    raise AsvaError("the web app needs gradio: pip install -e '.[app]' (or pip install 'asva-jax[app]')")
  _check_port(fv.host, fv.port)
  chosen = {k: fv[k].value for k in ("scheduler", "steps", "audio_guidance", "text_guidance") if fv[k].value is not None}
  check_plan(dataclasses.replace(Settings(), **chosen))  # bad flags fail before loading anything
  models = load_models(fv.ckpt, fv.step, dtype=jnp.dtype(fv.dtype))
  defaults = dataclasses.replace(settings_from_config(models.config, Settings()), **chosen)
  check_plan(defaults)
  studio = Studio(models, defaults)
  signal.signal(signal.SIGTERM, _stop)  # a terminated server removes its folder too
  try:
    if fv.warmup:
      print(f"compiling ({defaults.scheduler}, {defaults.steps} steps) ...", flush=True)
      print(f"compiled: {studio.warm_up()} XLA compilations at start-up", flush=True)
    examples = demo_examples(fv.ckpt, studio.classes)
    # Uploads go into the studio's own temporary folder (removed at exit); gradio reads this when imported.
    os.environ["GRADIO_TEMP_DIR"] = str(studio.folder / "uploads")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from asva_jax.app import ui
    page = ui.build(studio, examples)
    allowed = sorted({os.path.dirname(v) for v, _ in examples})
    page.queue(default_concurrency_limit=1).launch(
        server_name=fv.host, server_port=fv.port, share=fv.share, max_file_size=fv.max_upload,
        allowed_paths=allowed, ssr_mode=False, css=ui.CSS)
  except OSError as e:
    if "port" in str(e).lower():
      raise AsvaError(f"--port {fv.port}: {e}") from e
    raise
  finally:
    studio.close()


def _check_port(host: str, port: int) -> None:
  """Fails before the slow start-up when the address cannot be served on."""
  try:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
      s.bind((host, port))
  except OSError as e:
    raise AsvaError(f"--host {host} --port {port}: cannot serve there ({e.strerror or e}); "
                    "choose another --port or --host") from e


def _stop(signum, frame):
  raise KeyboardInterrupt  # what gradio's serving loop stops on; `main`'s `finally` then cleans up


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
