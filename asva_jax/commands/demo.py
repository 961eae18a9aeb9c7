r"""The built-in demo: train a small AVSyncD on synthetic data, then write its synchronisation report.

    python -m asva_jax.demo [--workdir outputs/demo] [--config.train.num_steps=300 ...]   (or: make demo)

`--config` defaults to configs/demo.py (docs/demo.md); rerunning resumes.
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

from asva_jax.commands import runner
from asva_jax.commands.train import define_distributed_flags, start_processes

# configs/ sits beside the package in a checkout; elsewhere give --config.
_REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.py"
DEFAULT_CONFIG = str(_REPO_CONFIG) if _REPO_CONFIG.is_file() else "configs/demo.py"


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
  runner.define_config_file("config", DEFAULT_CONFIG, "Demo config file (default: configs/demo.py).",
                            flag_values=fv, lock_config=True)
  flags.DEFINE_string("workdir", "outputs/demo", "Run folder (a local one): the training run and the report.",
                      flag_values=fv)
  define_distributed_flags(fv)


def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  start_processes(fv)
  from asva_jax.demo.job import run_demo
  run_demo(fv.config, fv.workdir)


def run(argv=None) -> None:
  runner.run(main, argv, define_flags=define_flags)


if __name__ == "__main__":
  run()
