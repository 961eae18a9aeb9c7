"""`python -m asva_jax.train`: the command lives in asva_jax.commands.train."""
from asva_jax.commands import train

if __name__ == "__main__":
  train.run()
