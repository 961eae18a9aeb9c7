"""The training loop: data, sharded state, resume, steps, logs, checkpoints, preemption.

    records = train(config, workdir)

Every host runs the same code. Only process 0 writes shared files (synthetic
data, the workdir's metadata, logs) while the others wait at a barrier; Orbax
coordinates checkpoint writes. SIGTERM makes the loop save the current step and
return normally (the command then exits 0).
"""

from __future__ import annotations

import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from asva_jax import storage
from asva_jax.errors import AsvaError, ConfigError
from asva_jax.schedulers.noise_schedule import PREDICTION_TYPES
from asva_jax.storage import as_path
from asva_jax.training import checkpoints, resume_check, sharding
from asva_jax.training.data import host_batch, make_loader
from asva_jax.training.flops import SOURCE as FLOPS_SOURCE, peak_flops, step_flops
from asva_jax.training.metrics_log import MetricsLog
from asva_jax.training.models import build_models
from asva_jax.training.program import build_program
from asva_jax.training.state import count_params
from asva_jax.training.text import TextEncodings


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def check_config(config) -> None:
  t = config.train
  devices, hosts = jax.device_count(), jax.process_count()
  per_device, rest = divmod(int(t.batch_size), devices)
  if rest or per_device == 0:
    raise ConfigError(f"--config.train.batch_size={t.batch_size} does not divide over {devices} devices")
  if int(t.batch_size) % hosts:
    raise ConfigError(f"--config.train.batch_size={t.batch_size} does not divide over {hosts} hosts")
  if per_device % int(t.grad_accum):
    raise ConfigError(f"--config.train.grad_accum={t.grad_accum} does not divide the {per_device} clips "
                      f"per device (batch_size {t.batch_size} over {devices} devices)")
  for field in ("num_steps", "log_every", "checkpoint_every", "grad_accum"):
    if int(t[field]) < 1:
      raise ConfigError(f"--config.train.{field}={t[field]} must be at least 1")
  radius = config.data.synthetic.get("ball_radius")
  if config.data.synthetic.enabled and radius is not None and not 0 < float(radius) <= 0.5:
    raise ConfigError(f"--config.data.synthetic.ball_radius={radius}: must be in (0, 0.5] (a fraction of the "
                      "frame's shorter side)")
  prediction = config.diffusion.prediction_type
  if prediction not in PREDICTION_TYPES:
    raise ConfigError(f"--config.diffusion.prediction_type={prediction!r}: expected one of "
                      f"{', '.join(PREDICTION_TYPES)}")


def synthetic_timing(s):
  """data.synthetic's optional timing fields (the demo sets them) -> `data_prep.synthetic.Timing`."""
  from data_prep.synthetic import Timing
  default = Timing()
  return Timing(durations=tuple(float(v) for v in s.get("durations", default.durations)),
                num_events=tuple(int(v) for v in s.get("num_events", default.num_events)),
                min_gap=float(s.get("min_gap", default.min_gap)),
                event_seconds=float(s.get("event_seconds", default.event_seconds)))


def prepare_synthetic(config, workdir) -> epath.Path:
  """Writes (once) a few synthetic videos and their shards under WORKDIR/data (process 0); with
  `data.synthetic.test_fraction` > 0 also the held-out test split and its shards.

  A `gs://` workdir gets them built in a local copy of WORKDIR/data (ArrayRecordWriter and the
  video decoder need a disk) and uploaded; the shards are read from the bucket.
  """
  from data_prep.build import BuildConfig, build, is_shard
  from data_prep.synthetic import BALL_RADIUS, write_dataset
  s = config.data.synthetic
  data = as_path(workdir) / "data"
  test_fraction = float(s.get("test_fraction", 0.0))
  if jax.process_index() == 0:
    with storage.staged(data, fetch=lambda name: not is_shard(name)) as local:
      raw, shards = local / "synthetic", local / "shards"
      if not (raw / "events.json").is_file():
        h, w = s.source_size
        write_dataset(raw, int(s.num_classes), int(s.videos_per_class), int(config.seed), height=int(h),
                      width=int(w), test_fraction=test_fraction, timing=synthetic_timing(s),
                      ball_radius=float(s.get("ball_radius", BALL_RADIUS)),
                      progress=bool(config.log.progress))
      for split in ("train", "test") if test_fraction > 0 else ("train",):
        build(BuildConfig(dataset="avsync15", root=str(raw), split=split, out=str(shards),
                          size=tuple(int(v) for v in s.size), name="synthetic"), num_workers=0,
              progress=bool(config.log.progress))
  barrier("synthetic data")
  return data / "shards"


def check_data(config) -> None:
  """Refuses a missing data folder before anything is written to the workdir."""
  data_dir = config.data.dir
  if not data_dir and not config.data.synthetic.enabled:
    raise AsvaError("--config.data.dir is not set: build the shards with python -m data_prep.build "
                    "--dataset avsync15 --root VIDEOS --split train --out DATA_DIR, then pass "
                    "--config.data.dir=DATA_DIR")
  if data_dir:
    storage.check_bucket(data_dir, "--config.data.dir")
  if data_dir and not as_path(data_dir).is_dir():
    raise AsvaError(f"--config.data.dir={data_dir}: no such folder; build the shards with python -m "
                    f"data_prep.build ... --out {data_dir}")
  ckpt = config.model.checkpoint
  if ckpt and not as_path(ckpt).is_dir():
    raise AsvaError(f"--config.model.checkpoint={ckpt}: no such folder; make it with python -m "
                    f"convert.from_pytorch --sd15 SD15_DIR --imagebind imagebind_huge.pth --out {ckpt}")


def open_data(config, workdir):
  from asva_jax.data import open_split
  data_dir = config.data.dir or prepare_synthetic(config, workdir)
  return open_split(data_dir, config.data.split, config.data.name or None)


class Preemption:
  """SIGTERM sets a flag; the loop saves and stops at the next step boundary (all hosts agree)."""

  def __init__(self):
    self.flag = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.flag = True

  def requested(self) -> bool:
    if jax.process_count() == 1:
      return self.flag
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array([self.flag]))))

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def compiler_options(config) -> dict | None:
  level = int(config.xla_backend_optimization_level)
  return {"xla_backend_optimization_level": level} if level >= 0 else None


def train(config, workdir) -> list[dict]:
  """Trains per `config` in `workdir` (resuming from its latest checkpoint); returns the logged records."""
  workdir = as_path(workdir)  # a local folder or gs://
  primary = jax.process_index() == 0
  check_config(config)
  storage.check_bucket(workdir, "--workdir")
  changed = resume_check.check_config(workdir, config)  # refusals come before anything is written
  check_data(config)
  # Given shards and models are opened before the workdir exists, so bad ones leave nothing behind.
  source = open_data(config, workdir) if config.data.dir else None
  built = build_models(config)
  checkpoints.check_resumable(workdir, config, built.model)
  if primary:
    workdir.mkdir(parents=True, exist_ok=True)
  barrier("workdir")
  if source is None:
    source = open_data(config, workdir)

  from asva_jax.workdir import shard_frame_size, write_run, write_text_encodings
  model = built.model
  barrier("before run metadata")  # every host sees the same "is it a new workdir?"
  write_run(workdir, config, built, frame_size=shard_frame_size(source), primary=primary)
  barrier("run metadata")
  use_moments = (config.model.autoencoder == "vae" and bool(config.data.use_vae_latents)
                 and "vae_mean" in source[0])
  text = TextEncodings(config.model.checkpoint, int(config.seed), model.unet.config.cross_attention_dim)

  program, initial, frozen = build_program(model, config, sharding.make_mesh(config.mesh))
  del model, built  # frees the float32 originals of the frozen tree
  mesh, replicated = program.mesh, program.replicated
  params, opt_state = initial.pop("params"), initial.pop("opt_state")
  param_sh, opt_sh = program.state_shardings["params"], program.state_shardings["opt_state"]

  manager = checkpoints.make_manager(workdir, config.train)
  start_step = 0
  restored = checkpoints.restore_latest(manager, checkpoints.abstract_like(params, param_sh),
                                        checkpoints.abstract_like(opt_state, opt_sh))
  if restored is not None:
    start_step, params, opt_state, _ = restored
    if primary and changed:
      print(f"resuming with changed settings: {'; '.join(changed)}", flush=True)
  state = {"step": jax.device_put(jnp.asarray(start_step, jnp.int32), replicated), "params": params,
           "opt_state": opt_state}
  total = int(config.train.num_steps)
  hosts = jax.process_count()
  # The stream is a function of the step, whatever the host count or batch layout that saved it.
  iterator = iter(make_loader(source, config, process_index=jax.process_index(), process_count=hosts,
                              start_step=start_step))
  trainable_count = count_params(params)
  if primary:
    print(f"{'resuming at' if start_step else 'starting at'} step {start_step} of {total} in {workdir}; "
          f"{trainable_count:,} trainable and {count_params(frozen):,} frozen parameters; mesh "
          f"{dict(mesh.shape)} over {jax.device_count()} {jax.devices()[0].platform} devices, "
          f"{hosts} host(s)", flush=True)

  step_fn = program.step
  log = MetricsLog(workdir, config.log, total_steps=total, initial_step=start_step, primary=primary,
                   run_config=config)
  preemption = Preemption()
  records, compiled, flops = [], None, None
  peak = peak_flops()
  batch = int(config.train.batch_size)
  log_every, ckpt_every = int(config.train.log_every), int(config.train.checkpoint_every)
  known_prompts = -1
  step = start_step
  window_start, window_steps = time.perf_counter(), 0

  def save(step: int, force: bool = False) -> None:
    nonlocal known_prompts
    if primary and len(text.used) != known_prompts:
      write_text_encodings(workdir, text.used)
      known_prompts = len(text.used)
    meta = {"step": step, "seed": int(config.seed), "process_count": hosts,
            "rng": np.asarray(jax.random.key_data(jax.random.key(int(config.seed)))).tolist()}
    checkpoints.save(manager, step, state, iterator, meta, config.to_json(), force=force)

  try:
    while step < total:
      local = host_batch(next(iterator), text, use_moments)
      global_batch = sharding.global_batch(local, mesh)
      if compiled is None:
        lowered = step_fn.lower(state, frozen, global_batch)
        flops = step_flops(lowered, int(config.train.grad_accum))
        compile_start = time.perf_counter()
        compiled = lowered.compile(compiler_options=compiler_options(config))
        logging.info("compiled the train step in %.1f s", time.perf_counter() - compile_start)
        window_start = time.perf_counter()
      state, metrics = compiled(state, frozen, global_batch)
      step += 1
      window_steps += 1
      log.advance()
      if step % log_every == 0 or step == total:
        metrics = jax.device_get(metrics)
        elapsed = time.perf_counter() - window_start
        steps_per_s = window_steps / elapsed if elapsed > 0 else None
        record = {"step": step, "loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"])}
        if steps_per_s:
          record.update(steps_per_s=steps_per_s, clips_per_s=steps_per_s * batch)
          if flops:
            per_device = flops * steps_per_s / jax.device_count()
            record["tflops_per_device"] = per_device / 1e12
            if peak:
              record["mfu"] = per_device / peak
        records.append(record)
        log.log(record)
        window_start, window_steps = time.perf_counter(), 0
      stop = preemption.requested()
      if step % ckpt_every == 0 or step == total or stop:
        save(step, force=stop)
      if stop:
        if primary:
          print(f"preempted: saved step {step} in {workdir}; rerun the same command to resume", flush=True)
        break
    manager.wait_until_finished()
  finally:
    preemption.restore()
    log.close()
    manager.close()
  if primary and flops:
    print(f"done at step {step}; {flops / 1e12:.4g} TFLOP per step ({FLOPS_SOURCE})", flush=True)
  return records
