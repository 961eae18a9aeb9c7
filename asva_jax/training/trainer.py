"""The trainer: refusals, data, run record, sharded state, resume, steps, logs, checkpoints, preemption.

    records = train(config, workdir)

`train` reads as its steps, in order: every refusal (config, workdir, data, model,
checkpoints) comes before anything is written.

Every host runs the same code. Only process 0 writes shared files (synthetic
data, the workdir's metadata, logs) while the others wait at a barrier; Orbax
coordinates checkpoint writes. SIGTERM makes the loop save the current step and
return normally (the command then exits 0).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from asva_jax import storage
from asva_jax.errors import AsvaError, ConfigError
from asva_jax.models.attention import kernels_in
from asva_jax.models.prompts import PromptEncoder
from asva_jax.parallel import sharding
from asva_jax.run_folder import shard_frame_size, write_text_encodings
from asva_jax.schedulers.noise_schedule import PREDICTION_TYPES
from asva_jax.storage import as_path
from asva_jax.training import checkpoints, resume_check
from asva_jax.training.batches import host_batch, make_loader
from asva_jax.training.build import build_models, check_audio_keys, remat_option, set_remat
from asva_jax.training.ema import check_ema_config
from asva_jax.training.flops import SOURCE as FLOPS_SOURCE, peak_flops, step_flops
from asva_jax.training.memory import choose_remat, device_bytes, peak_bytes
from asva_jax.training.metrics_log import MetricsLog
from asva_jax.training.preemption import Preemption
from asva_jax.training.program import TrainProgram, build_program
from asva_jax.training.state import count_params
from asva_jax.training.trained import prompt_encoder, record_run


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
  check_ema_config(t)
  remat_option(config.remat)
  check_audio_keys(config.model.get("audio_keys", "auto"))
  radius = config.data.synthetic.get("ball_radius")
  if config.data.synthetic.enabled and radius is not None and not 0 < float(radius) <= 0.5:
    raise ConfigError(f"--config.data.synthetic.ball_radius={radius}: must be in (0, 0.5] (a fraction of the "
                      "frame's shorter side)")
  prediction = config.diffusion.prediction_type
  if prediction not in PREDICTION_TYPES:
    raise ConfigError(f"--config.diffusion.prediction_type={prediction!r}: expected one of "
                      f"{', '.join(PREDICTION_TYPES)}")


def synthetic_timing(s):
  """data.synthetic's optional timing fields (the demo sets them) -> `asva_jax.prep.synthetic.Timing`."""
  from asva_jax.prep.synthetic import Timing
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
  from asva_jax.prep.build import BuildConfig, build, is_shard
  from asva_jax.prep.synthetic import BALL_RADIUS, write_dataset
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
  """The training split: `data.dir`'s shards, or the synthetic ones (written under WORKDIR/data)."""
  from asva_jax.data import open_split
  data_dir = config.data.dir or prepare_synthetic(config, workdir)
  return open_split(data_dir, config.data.split, config.data.name or None)


def compiler_options(config) -> dict | None:
  level = int(config.xla_backend_optimization_level)
  return {"xla_backend_optimization_level": level} if level >= 0 else None


def make_workdir(workdir: epath.Path) -> None:
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
  barrier("workdir")


def prepare_run(config, workdir, built, source) -> tuple[PromptEncoder, bool]:
  """Writes the run record (process 0) -> (the prompts' text encodings, whether the step takes the
  shards' VAE moments instead of pixels)."""
  barrier("before run metadata")  # every host sees the same "is it a new workdir?"
  record_run(workdir, config, built, frame_size=shard_frame_size(source), primary=jax.process_index() == 0)
  barrier("run metadata")
  use_moments = (config.model.autoencoder == "vae" and bool(config.data.use_vae_latents)
                 and "vae_mean" in source[0])
  text = prompt_encoder(config, built.model.unet.config.cross_attention_dim)
  return text, use_moments


@dataclasses.dataclass
class Run:
  """What the steps of one run share: fixed over the run (the live state is passed beside it)."""
  config: Any
  workdir: epath.Path
  program: TrainProgram
  frozen: Any
  text: PromptEncoder
  use_moments: bool
  manager: Any  # the Orbax CheckpointManager
  known_prompts: int = -1  # how many prompts the saved text encodings hold

  @property
  def primary(self) -> bool:
    return jax.process_index() == 0


def build_state(config, built) -> tuple[TrainProgram, dict, Any]:
  """(program, initial arrays {"params", "opt_state"[, "ema"]}, frozen): the model split and placed
  on the mesh, the step jitted."""
  program, initial, frozen = build_program(built.model, config, sharding.make_mesh(config.mesh))
  initial.pop("step")
  return program, initial, frozen


def restore(run: Run, initial: dict, changed: list[str]) -> tuple[dict, int]:
  """(state, start step): the workdir's latest checkpoint placed on the mesh, else step 0."""
  shardings = run.program.state_shardings
  start_step, arrays = 0, initial
  restored = checkpoints.restore_latest(
      run.manager, {item: checkpoints.abstract_like(x, shardings[item]) for item, x in initial.items()})
  if restored is not None:
    start_step, arrays, _ = restored
    if run.primary and changed:
      print(f"resuming with changed settings: {'; '.join(changed)}", flush=True)
  state = {"step": jax.device_put(jnp.asarray(start_step, jnp.int32), run.program.replicated), **arrays}
  return state, start_step


def announce(run: Run, state: dict, start_step: int) -> None:
  if run.primary:
    mesh, keys = run.program.mesh, run.program.audio_keys
    print(f"{'resuming at' if start_step else 'starting at'} step {start_step} of "
          f"{int(run.config.train.num_steps)} in {run.workdir}; {count_params(state['params']):,} trainable "
          f"and {count_params(run.frozen):,} frozen parameters; mesh {dict(mesh.shape)} over "
          f"{jax.device_count()} {jax.devices()[0].platform} devices, {jax.process_count()} host(s)"
          + (f"; EMA weights, decay {float(run.config.train.ema_decay):g}" if "ema" in state else "")
          + f"; audio keys {'masked' if keys is None else f'gathered ({keys} per frame)'}", flush=True)


def remat_program(run: Run, state: dict, remat: str) -> TrainProgram:
  """`run.program` with its step built for another remat setting. The model is put together again
  from shapes only (the graphdef with abstract params and frozen tree: nothing is allocated or
  moved), switched (`set_remat`) and handed to `build_program`, so the step is the trainer's own."""
  def shapes(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
  model = nnx.merge(run.program.graphdef, shapes(state["params"]), shapes(run.frozen))
  set_remat(model, remat)
  program, _, _ = build_program(model, run.config, run.program.mesh)
  return program


def shared_limit() -> int | None:
  """The device memory limit every host chooses remat by (the smallest over hosts, so that all of
  them compile the same program); None where no device has one (CPUs)."""
  limit = device_bytes(jax.local_devices()[0])
  if jax.process_count() == 1:
    return limit
  from jax.experimental import multihost_utils
  limits = np.ravel(multihost_utils.process_allgather(np.int64(-1 if limit is None else limit)))
  known = [int(v) for v in limits if v >= 0]
  return min(known) if known else None


def make_step(run: Run, state: dict, global_batch: dict):
  """(compiled step, FLOPs per step or None, what was compiled {"attention", "remat", ...}): the
  jitted step lowered for these shapes and compiled. remat "auto" compiles remat none first and,
  where that does not fit the device, the next setting of `memory.AUTO_ORDER` (replacing
  `run.program`); on a device with no memory limit (CPU) that is one compilation, as for a fixed
  setting."""
  config = run.config
  lowered_by = {}

  def compile_with(remat: str):
    program = run.program if remat in ("none", config.remat) else remat_program(run, state, remat)
    lowered_by[remat] = (program, program.step.lower(state, run.frozen, global_batch))
    return lowered_by[remat][1].compile(compiler_options=compiler_options(config))

  compile_start = time.perf_counter()
  if config.remat == "auto":
    compiled, choice = choose_remat(compile_with, shared_limit())
    remat, why = choice.remat, f" ({choice.reason()})"
    info = {"remat_config": "auto", **choice.record()}
  else:
    compiled, remat, why = compile_with(config.remat), config.remat, ""
    info = {"remat": remat, "need_bytes": peak_bytes(compiled)}
  seconds = time.perf_counter() - compile_start
  run.program, lowered = lowered_by[remat]
  flops = step_flops(lowered, int(config.train.grad_accum))
  attention = kernels_in(compiled.as_text())  # model.attention "auto": cuDNN flash where it compiles
  if run.primary:
    count = f" ({len(lowered_by)} compilations)" if len(lowered_by) > 1 else ""
    print(f"compiled the train step in {seconds:.1f} s{count}; attention {attention}, remat {remat}{why}",
          flush=True)
  return compiled, flops, {"attention": attention, **info, "audio_keys": run.program.audio_keys,
                           "compile_s": seconds}


def window_rate(metrics, window_start: float, steps: int) -> tuple[Any, float | None]:
  """(the metrics, computed; steps/s since `window_start`). Steps are dispatched asynchronously, so
  the window ends when the last step's metrics exist: timing only the dispatch logged 15-25 steps/s
  for the demo's 3.8 on a CPU."""
  metrics = jax.block_until_ready(metrics)
  elapsed = time.perf_counter() - window_start
  return metrics, (steps / elapsed if elapsed > 0 else None)


def step_record(run: Run, step: int, metrics, steps_per_s: float | None, flops, peak) -> dict:
  """The logged figures of `step`: loss, gradient norm, and speed over the steps since the last log."""
  metrics = jax.device_get(metrics)
  record = {"step": step, "loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"])}
  if steps_per_s:
    record.update(steps_per_s=steps_per_s, clips_per_s=steps_per_s * int(run.config.train.batch_size))
    if flops:
      per_device = flops * steps_per_s / jax.device_count()
      record["tflops_per_device"] = per_device / 1e12
      if peak:
        record["mfu"] = per_device / peak
  return record


def save(run: Run, step: int, state: dict, force: bool = False) -> None:
  """The step's checkpoint, after the text encodings of any prompt first used since the last save."""
  config = run.config
  if run.primary and len(run.text.used) != run.known_prompts:
    write_text_encodings(run.workdir, run.text.used)
    run.known_prompts = len(run.text.used)
  meta = {"step": step, "seed": int(config.seed), "process_count": jax.process_count(),
          "rng": np.asarray(jax.random.key_data(jax.random.key(int(config.seed)))).tolist()}
  checkpoints.save(run.manager, step, state, meta, config.to_json(), force=force)


def run_steps(run: Run, state: dict, iterator, start_step: int) -> tuple[list[dict], int, float | None]:
  """Steps from `start_step` to train.num_steps, logging every log_every and saving every
  checkpoint_every; SIGTERM saves and stops early. -> (logged records, last step, FLOPs per step)."""
  config, t = run.config, run.config.train
  total, log_every, ckpt_every = int(t.num_steps), int(t.log_every), int(t.checkpoint_every)
  log = MetricsLog(run.workdir, config.log, total_steps=total, initial_step=start_step, primary=run.primary,
                   run_config=config)
  preemption = Preemption()
  records, compiled, flops, peak = [], None, None, peak_flops()
  step = start_step
  window_start, window_steps = time.perf_counter(), 0
  try:
    while step < total:
      local = host_batch(next(iterator), run.text, run.use_moments)
      global_batch = sharding.global_batch(local, run.program.mesh)
      if compiled is None:
        compiled, flops, what = make_step(run, state, global_batch)
        log.note({"compiled": {"step": step, **what}})
        window_start = time.perf_counter()
      state, metrics = compiled(state, run.frozen, global_batch)
      step += 1
      window_steps += 1
      log.advance()
      if step % log_every == 0 or step == total:
        metrics, steps_per_s = window_rate(metrics, window_start, window_steps)
        record = step_record(run, step, metrics, steps_per_s, flops, peak)
        records.append(record)
        log.log(record)
        window_start, window_steps = time.perf_counter(), 0
      stop = preemption.requested()
      if step % ckpt_every == 0 or step == total or stop:
        save(run, step, state, force=stop)
      if stop:
        if run.primary:
          print(f"preempted: saved step {step} in {run.workdir}; rerun the same command to resume", flush=True)
        break
    run.manager.wait_until_finished()
  finally:
    preemption.restore()
    log.close()
    run.manager.close()
  return records, step, flops


def finish(run: Run, step: int, flops: float | None) -> None:
  if run.primary and flops:
    print(f"done at step {step}; {flops / 1e12:.4g} TFLOP per step ({FLOPS_SOURCE})", flush=True)


def train(config, workdir) -> list[dict]:
  """Trains per `config` in `workdir` (resuming from its latest checkpoint); returns the logged records."""
  workdir = as_path(workdir)  # a local folder or gs://
  check_config(config)
  storage.check_bucket(workdir, "--workdir")
  changed = resume_check.check_config(workdir, config)  # refusals come before anything is written
  check_data(config)
  # Given shards and models are opened before the workdir exists, so bad ones leave nothing behind.
  source = open_data(config, workdir) if config.data.dir else None
  built = build_models(config)
  checkpoints.check_resumable(workdir, config, built.model)
  make_workdir(workdir)
  if source is None:
    source = open_data(config, workdir)  # the synthetic shards, written under the workdir
  text, use_moments = prepare_run(config, workdir, built, source)
  program, initial, frozen = build_state(config, built)
  del built  # frees the float32 originals of the frozen tree
  run = Run(config, workdir, program, frozen, text, use_moments, checkpoints.make_manager(workdir, config.train))
  state, start_step = restore(run, initial, changed)
  del initial  # in `state` now; the step donates it, so the names left here hold no memory
  # The stream is a function of the step, whatever the host count or batch layout that saved it.
  iterator = iter(make_loader(source, config, process_index=jax.process_index(),
                              process_count=jax.process_count(), start_step=start_step))
  announce(run, state, start_step)
  records, step, flops = run_steps(run, state, iterator, start_step)
  finish(run, step, flops)
  return records
