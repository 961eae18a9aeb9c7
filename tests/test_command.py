"""asva_jax.commands.runner: expected failures are one line and exit 2; bugs keep their traceback."""

import errno

import pytest
from absl import app

from asva_jax.commands import runner
from asva_jax.errors import AsvaError


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
  """Not verbose, and whatever `--verbose` sets in the environment is undone after each test."""
  monkeypatch.setenv("ASVA_VERBOSE", "0")


def _run(main, *args):
  with pytest.raises(SystemExit) as exit_info:
    runner.run(main, argv=["prog", *args])
  return exit_info.value.code


def _raise(error):
  def main(argv):
    raise error
  return main


@pytest.mark.parametrize("error,line", [
    (AsvaError("ckpt/unet: missing"), "error: ckpt/unet: missing\n"),
    (app.UsageError("--out x: exists"), "error: --out x: exists\n"),
    (FileExistsError(errno.EEXIST, "File exists", "out"),
     "error: out: File exists (choose another path or remove it)\n"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "taken/out"),
     "error: taken/out: Not a directory (a part of the path is a file, not a folder)\n"),
])
def test_expected_failures_are_one_line(capsys, error, line):
  assert _run(_raise(error)) == runner.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert err == line and "Traceback" not in err


def test_verbose_adds_the_traceback(capsys, monkeypatch):
  assert _run(_raise(AsvaError("bad")), "--verbose") == runner.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert "Traceback" in err and err.endswith("error: bad\n")
  monkeypatch.setenv("ASVA_VERBOSE", "1")
  assert _run(_raise(AsvaError("bad"))) == runner.EXIT_BAD_INPUT
  assert "Traceback" in capsys.readouterr().err


def test_bugs_keep_their_traceback():
  with pytest.raises(ZeroDivisionError):
    runner.run(_raise(ZeroDivisionError("a bug")), argv=["prog"])
  with pytest.raises(OSError):  # an OSError on no path of the user's is a bug too
    runner.run(_raise(OSError(errno.EIO, "I/O error")), argv=["prog"])


def test_unknown_flag_is_named(capsys):
  assert _run(lambda argv: None, "--no-such-flag=1") == runner.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "no-such-flag" in err and "Traceback" not in err


def _out_command(seen: list):
  """A command with an `--out` flag, defined only when it runs."""
  from absl import flags

  def define_flags(fv):
    flags.DEFINE_string("out", None, "Output.", flag_values=fv)

  def main(argv, fv):
    seen.append((argv[1:], fv.out, flags.FLAGS.is_parsed()))
  return main, define_flags


def test_two_commands_with_the_same_flag_run_in_one_process():
  seen = []
  for out in ("a.mp4", "b.json"):
    main, define_flags = _out_command(seen)
    with pytest.raises(SystemExit) as e:
      runner.run(main, ["prog", f"--out={out}"], define_flags=define_flags)
    assert not e.value.code
  assert seen == [([], "a.mp4", True), ([], "b.json", True)]
  from absl import flags
  assert "out" not in flags.FLAGS  # nothing leaks into the global flags


def test_config_overrides_come_from_the_given_command_line(tmp_path, capsys):
  (tmp_path / "c.py").write_text("import ml_collections\n\ndef get_config():\n"
                                 "  return ml_collections.ConfigDict({'steps': 1})\n")
  seen = []

  def define_flags(fv):
    runner.define_config_file("config", str(tmp_path / "c.py"), "Config.", flag_values=fv)

  def main(argv, fv):
    seen.append(fv.config.steps)
  with pytest.raises(SystemExit):
    runner.run(main, ["prog", "--config.steps=7"], define_flags=define_flags)
  assert seen == [7]
  assert _run_defined(main, define_flags, "--config.stepz=7") == runner.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert err.startswith("error: --config.stepz=7: the config has no field 'stepz'") and "Traceback" not in err


def _run_defined(main, define_flags, *args):
  with pytest.raises(SystemExit) as exit_info:
    runner.run(main, ["prog", *args], define_flags=define_flags)
  return exit_info.value.code


NOISY_EXIT = """
from asva_jax.commands import runner
from asva_jax.errors import AsvaError

class Noisy:  # stands in for an aborted async read whose callback raises at interpreter exit
  def __del__(self):
    raise RuntimeError("Event loop is closed")

def main(argv):
  global left_behind
  left_behind = Noisy()
  raise AsvaError("bad input")

runner.run(main)
"""


@pytest.mark.parametrize("verbose,message", [(False, "Event loop is closed"), (True, "Event loop is closed"),
                                             (False, "another bug")])
def test_a_failure_is_one_line_even_when_abandoned_work_raises_at_exit(tmp_path, verbose, message):
  import os
  import subprocess
  import sys
  script = tmp_path / "noisy.py"
  script.write_text(NOISY_EXIT.replace("Event loop is closed", message))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONPATH": root, "ASVA_VERBOSE": "1" if verbose else "0"}
  result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr
  if verbose or message != "Event loop is closed":  # only that one artefact is dropped, and not verbosely
    assert message in result.stderr and "error: bad input" in result.stderr
  else:
    assert result.stderr.strip() == "error: bad input", result.stderr
