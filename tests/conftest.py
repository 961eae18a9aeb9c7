"""Session-wide test setup."""

from absl import flags

# grain's worker processes read absl's FLAGS and refuse unparsed ones; the commands mark them
# parsed (asva_jax.commands.runner), library code does not, so a program without a command
# (here: the test session) marks them once, as docs/training.md says.
flags.FLAGS.mark_as_parsed()
