"""`python -m asva_jax.sample`: the command lives in asva_jax.commands.sample."""
from asva_jax.commands import sample

if __name__ == "__main__":
  sample.run()
