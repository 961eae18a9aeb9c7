r"""Train AVSyncD (or a small model from scratch) into a workdir; rerunning resumes it.

    python -m asva_jax.train --config configs/tiny.py --workdir /tmp/tiny
    python -m asva_jax.train --config configs/avsyncd.py --workdir runs/avsync15 \
        --config.model.checkpoint=CKPT --config.data.dir=DATA [--config.train.batch_size=64 ...]

Several hosts (TPU pod slice, SLURM, several machines): run the same command on every
host with `--distributed` (auto-detection) or with `--coordinator_address HOST:PORT
--num_processes N --process_id I`. See docs/training.md. The built-in demo (training,
then its synchronisation report) is its own command: `python -m asva_jax.demo`.
"""

from __future__ import annotations

from absl import app, flags, logging

from asva_jax.commands import runner


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  runner.define_config_file("config", None, "Training config file (configs/*.py).", flag_values=fv,
                            lock_config=True)
  flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, text encodings; reused to resume.",
                      required=True, flag_values=fv)
  define_distributed_flags(fv)


def define_distributed_flags(fv: flags.FlagValues) -> None:
  """The flags of `parallel.hosts.initialize` (train, demo, sample)."""
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (auto-detects TPU pods, SLURM).",
                    flag_values=fv)
  flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, for several hosts.", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).", flag_values=fv)
  flags.DEFINE_integer("process_id", None, "This process's index.", flag_values=fv)
  flags.DEFINE_string("cpu_collectives", None, "CPU collectives for several CPU processes, e.g. gloo.",
                      flag_values=fv)


def start_processes(fv: flags.FlagValues) -> None:
  """Quiet logging unless asked, then `parallel.hosts.initialize` from the flags."""
  from asva_jax.parallel.hosts import initialize
  if not fv["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  initialize(fv.coordinator_address, fv.num_processes, fv.process_id, fv.cpu_collectives,
             auto=fv.distributed)


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if fv.config is None:
    raise app.UsageError("--config is required (e.g. --config configs/tiny.py)")
  start_processes(fv)
  from asva_jax.training.trainer import train
  train(fv.config, fv.workdir)
  if "demo" in fv.config:  # configs/demo.py: its report is the demo command's job
    print(f"trained the demo model in {fv.workdir}; its synchronisation report: "
          f"python -m asva_jax.demo --workdir {fv.workdir}", flush=True)


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
