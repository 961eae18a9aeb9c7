"""asva_jax.command: expected failures are one line and exit 2; bugs keep their traceback."""

import errno

import pytest
from absl import app

from asva_jax import command
from asva_jax.errors import AsvaError


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
  """Not verbose, and whatever `--verbose` sets in the environment is undone after each test."""
  monkeypatch.setenv("ASVA_VERBOSE", "0")


def _run(main, *args):
  with pytest.raises(SystemExit) as exit_info:
    command.run(main, argv=["prog", *args])
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
  assert _run(_raise(error)) == command.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert err == line and "Traceback" not in err


def test_verbose_adds_the_traceback(capsys, monkeypatch):
  assert _run(_raise(AsvaError("bad")), "--verbose") == command.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert "Traceback" in err and err.endswith("error: bad\n")
  monkeypatch.setenv("ASVA_VERBOSE", "1")
  assert _run(_raise(AsvaError("bad"))) == command.EXIT_BAD_INPUT
  assert "Traceback" in capsys.readouterr().err


def test_bugs_keep_their_traceback():
  with pytest.raises(ZeroDivisionError):
    command.run(_raise(ZeroDivisionError("a bug")), argv=["prog"])
  with pytest.raises(OSError):  # an OSError on no path of the user's is a bug too
    command.run(_raise(OSError(errno.EIO, "I/O error")), argv=["prog"])


def test_unknown_flag_is_named(capsys):
  assert _run(lambda argv: None, "--no-such-flag=1") == command.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "no-such-flag" in err and "Traceback" not in err
