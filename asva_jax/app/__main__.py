"""`python -m asva_jax.app`: the command lives in asva_jax.commands.app."""
from asva_jax.commands import app

app.run()
