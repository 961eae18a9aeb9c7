"""Runs a command: its flags, parsed into a fresh `FlagValues`, then `main(argv, flag_values)`;
expected failures become one line on stderr and exit status 2.

    def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None: ...  # nothing defined at import
    def main(argv, fv: flags.FlagValues = flags.FLAGS) -> None: ...    # options value -> plain function
    if __name__ == "__main__":
      runner.run(main, define_flags=define_flags)

Each call defines the command's flags anew, so two commands that both have `--out` run in one
process (tests) without clashing. These print `error: <message>` and exit 2 with no traceback:
  * an `AsvaError` raised by `main` (bad files, folders, layouts: the message names them);
  * absl's `UsageError` and every flag-parsing failure (an unknown flag, a bad value, a
    misspelt `--config.` override, a config file that does not load), naming the flag;
  * a file-system error on a path (`FileExistsError`, `IsADirectoryError`,
    `NotADirectoryError`, `PermissionError`, a read-only or full disk, ...), naming the path.
`--verbose` on the command line or `ASVA_VERBOSE=1` in the environment shows the
traceback too. Any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import traceback
from collections.abc import Callable

from absl import app, flags

from asva_jax.errors import AsvaError

EXIT_BAD_INPUT = 2

# errno values that describe the user's paths or disk, not a bug in the program.
_PATH_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM,
                errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ENOTEMPTY}
_PATH_HINTS = {
    errno.EEXIST: "choose another path or remove it",
    errno.EISDIR: "a file is expected here, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "check the permissions or choose a writable path",
    errno.EPERM: "check the permissions or choose a writable path",
    errno.EROFS: "choose a path on a writable file system",
    errno.ENOSPC: "free some space or choose another disk",
}


def verbose(argv: list[str]) -> bool:
  return "--verbose" in argv or os.environ.get("ASVA_VERBOSE", "") not in ("", "0")


def _without_closed_loop_noise(unraisable) -> None:
  """Drops one known artefact: when Orbax abandons a read (a damaged checkpoint), tensorstore's
  late callbacks raise "Event loop is closed" into the loop Orbax already closed, and Python would
  print that traceback beside the one-line error. Everything else goes to the default hook;
  `--verbose` shows everything."""
  value = unraisable.exc_value
  if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
    return
  sys.__unraisablehook__(unraisable)


def fail(message: str, argv: list[str] | None = None) -> None:
  """Print `error: message` (plus the active traceback when verbose) and exit 2."""
  if verbose(sys.argv if argv is None else argv):
    traceback.print_exc()
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_BAD_INPUT)


def describe_os_error(e: OSError) -> str | None:
  """'PATH: what happened (what to do)' for a file-system error on a named path, else None."""
  if e.errno not in _PATH_ERRNOS or not e.filename:
    return None
  text = f"{e.filename}: {e.strerror or type(e).__name__}"
  if e.filename2:
    text = f"{e.filename} -> {e.filename2}: {e.strerror or type(e).__name__}"
  hint = _PATH_HINTS.get(e.errno)
  return f"{text} ({hint})" if hint else text


def _offending_flag(argv: list[str], text: str) -> str | None:
  """The command-line argument a flag-parsing message is about (first flag whose name or
  dotted path contains a word quoted in the message)."""
  words = set(re.findall(r"['\"]([\w.-]+)['\"]", text))
  for arg in argv[1:]:
    if not arg.startswith("-"):
      continue
    name = arg.lstrip("-").split("=", 1)[0]
    if name in words or set(name.split(".")) & words:
      return arg
  return None


def describe_flag_error(e: Exception, argv: list[str], fv: flags.FlagValues = flags.FLAGS) -> str:
  """One line for a failure while parsing the command line."""
  if isinstance(e, flags.Error):
    return str(e).strip().splitlines()[0] + " (see --helpfull)"
  # ml_collections raises AttributeError/KeyError for an unknown `--config.` field, with
  # the "Did you mean" suggestion inside the message, and OSError/anything for a config
  # file that does not load.
  text = " ".join(str(a).strip("'\"") for a in e.args).replace("\\n", " ").replace("\n", " ")
  text = " ".join(text.replace("\\'", "'").split())
  if isinstance(e, (AttributeError, KeyError)):
    key = text.split()[0].strip("'\"") if text else "?"
    arg = _offending_flag(argv, text) or _offending_flag(argv, f"'{key}'") or "a --config. override"
    rest = text[len(text.split()[0]):].strip() if text else ""
    return f"{arg}: the config has no field {key!r}" + (f"; {rest[0].lower() + rest[1:]}" if rest else "")
  if isinstance(e, OSError) and "Failed loading config file" in str(e):
    # ml_collections lists the attempts; the last line is the reason ("[Errno 2] No such file ...").
    detail = str(e).strip().splitlines()[-1].strip()
  else:
    detail = f"{type(e).__name__}: {' '.join(str(e).split())}"
  names = _config_flag_names(fv)
  where = "the default config file"
  for i, arg in enumerate(argv[1:], 1):
    if arg.lstrip("-").split("=", 1)[0] in names:
      where = arg if "=" in arg or i + 1 >= len(argv) else f"{arg} {argv[i + 1]}"
  return f"{where}: the config file cannot be loaded: {detail}"


def _config_flag_names(fv: flags.FlagValues = flags.FLAGS) -> set[str]:
  from ml_collections.config_flags import config_flags
  return {name for name in fv if config_flags.is_config_flag(fv[name])}


def _load_error(value) -> Exception | None:
  """The error ml_collections deferred when a config file failed to load, else None."""
  if type(value).__name__ != "_ErrorConfig":
    return None
  return object.__getattribute__(value, "_error")


def define_aliases(aliases: dict[str, str], fv: flags.FlagValues) -> None:
  """`--old-spelling` for `--flag` ({flag: old spelling}): documented command lines keep working."""
  for name, alias in aliases.items():
    flags.DEFINE_alias(alias, name, flag_values=fv)


def option_values(options_type, fv: flags.FlagValues) -> dict:
  """{field: the value of the flag of that name} for an options dataclass named after the flags."""
  import dataclasses
  return {f.name: fv[f.name].value for f in dataclasses.fields(options_type)}


_HELP = ("-h", "-help", "--help", "-?", "--helpshort", "--helpfull")


def _parse_flags(argv: list[str], fv: flags.FlagValues) -> list[str]:
  """Parses `argv` into `fv`, which also takes absl's own flags (`--verbosity`, ...: the same Flag
  objects, so absl's logging sees them); the global FLAGS are marked parsed (absl's `app.run` and
  grain's worker options read them)."""
  for name in flags.FLAGS:
    if name not in fv and name == flags.FLAGS[name].name:
      fv[name] = flags.FLAGS[name]
  if any(arg in _HELP for arg in argv[1:]):
    print(fv.get_help())
    sys.exit(0)
  try:
    args = fv(argv)
  except Exception as e:  # noqa: BLE001 - everything raised while parsing comes from the command line
    fail(describe_flag_error(e, argv, fv), argv)
  for name in _config_flag_names(fv):
    error = _load_error(fv[name].value)
    if error is not None:
      fail(describe_flag_error(error, argv, fv), argv)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return args


def define_config_file(name: str, default: str | None, help_string: str, *,
                       flag_values: flags.FlagValues = flags.FLAGS, **kwargs):
  """`config_flags.DEFINE_config_file` under this module's contract.

  ml_collections loads the default config, and applies the `--name.` overrides of
  sys.argv (the command line `run` was given, see `_command_line`), while the flag is
  defined: a misspelt override would raise there, before parsing can turn it into one
  line. Define config flags through this.
  """
  from ml_collections import config_flags
  try:
    return config_flags.DEFINE_config_file(name, default, help_string, flag_values=flag_values, **kwargs)
  except Exception as e:  # noqa: BLE001 - raised by the command line's overrides
    fail(describe_flag_error(e, sys.argv, flag_values))


@contextlib.contextmanager
def _command_line(argv: list[str]):
  """sys.argv = argv while the flags are defined and parsed: ml_collections reads a config flag's
  `--config.` overrides from sys.argv (a real `python -m` already has them there; an in-process
  call, e.g. a test, does not)."""
  saved = sys.argv
  sys.argv = list(argv)
  try:
    yield
  finally:
    sys.argv = saved


def run(main: Callable[..., object], argv: list[str] | None = None, *,
        define_flags: Callable[[flags.FlagValues], None] | None = None) -> None:
  """absl's `app.run` with the project's error contract (see the module docstring).

  With `define_flags`: a fresh `FlagValues` gets the command's flags and `main(args, fv)` runs;
  without, `main(args)` reads the global FLAGS (a plain absl main)."""
  argv = list(sys.argv if argv is None else argv)
  if "--verbose" in argv:
    argv.remove("--verbose")
    os.environ["ASVA_VERBOSE"] = "1"
  if not verbose(argv):
    sys.unraisablehook = _without_closed_loop_noise
  fv = flags.FLAGS
  if define_flags is not None:
    fv = flags.FlagValues()
    with _command_line(argv):
      define_flags(fv)

  def parse(args):
    with _command_line(argv):
      return _parse_flags(args, fv)

  def guarded(args):
    try:
      return main(args) if define_flags is None else main(args, fv)
    except AsvaError as e:
      fail(str(e), argv)
    except app.UsageError as e:
      fail(str(e), argv)
    except OSError as e:
      message = describe_os_error(e)
      if message is None:
        raise
      fail(message, argv)

  app.run(guarded, argv=argv, flags_parser=parse)
