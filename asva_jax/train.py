r"""Train AVSyncD (or a small model from scratch) into a workdir; rerunning resumes it.

    python -m asva_jax.train --config configs/tiny.py --workdir /tmp/tiny
    python -m asva_jax.train --config configs/avsyncd.py --workdir runs/avsync15 \
        --config.model.checkpoint=CKPT --config.data.dir=DATA [--config.train.batch_size=64 ...]

Several hosts (TPU pod slice, SLURM, several machines): run the same command on every
host with `--distributed` (auto-detection) or with `--coordinator_address HOST:PORT
--num_processes N --process_id I`. See docs/training.md.
"""

from __future__ import annotations

from absl import app, flags, logging

from asva_jax.commands import runner
from asva_jax.errors import AsvaError

_CONFIG = runner.define_config_file("config", None, "Training config file (configs/*.py).",
                                     lock_config=True)
flags.DEFINE_string("workdir", None, "Run folder: checkpoints, logs, text encodings; reused to resume.",
                    required=True)
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (auto-detects TPU pods, SLURM).")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, for several hosts.")
flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
flags.DEFINE_integer("process_id", None, "This process's index.")
flags.DEFINE_string("cpu_collectives", None, "CPU collectives for several CPU processes, e.g. gloo.")
FLAGS = flags.FLAGS


def initialize_distributed() -> None:
  import jax
  if FLAGS.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", FLAGS.cpu_collectives)
  explicit = FLAGS.coordinator_address or FLAGS.num_processes
  if not (explicit or FLAGS.distributed):
    return
  try:
    if explicit:
      jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                 num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
    else:
      jax.distributed.initialize()
  except ValueError as e:  # jax found no cluster, or the flags are incomplete
    flag = "--coordinator_address/--num_processes/--process_id" if explicit else "--distributed"
    raise AsvaError(f"{flag}: cannot start the processes ({e}); --distributed detects TPU pods, SLURM and "
                    "other clusters only; elsewhere pass --coordinator_address HOST:PORT --num_processes N "
                    "--process_id I on every host, or drop the flag on one machine") from e


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required (e.g. --config configs/tiny.py)")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
  initialize_distributed()
  if "demo" in _CONFIG.value:  # configs/demo.py: the training run, then its synchronisation report
    from asva_jax.errors import AsvaError
    from asva_jax.storage import is_remote
    if is_remote(FLAGS.workdir):
      raise AsvaError(f"--workdir {FLAGS.workdir}: the demo writes its report (GIF, plot) on a local disk; "
                      "give it a local folder (other configs train into gs:// workdirs)")
    from asva_jax.demo.run import run
    run(_CONFIG.value, FLAGS.workdir)
    return
  from asva_jax.training.loop import train
  train(_CONFIG.value, FLAGS.workdir)


if __name__ == "__main__":
  runner.run(main)
