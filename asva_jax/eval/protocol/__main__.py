"""`python -m asva_jax.eval.protocol`: the command lives in asva_jax.commands.protocol."""
from asva_jax.commands import protocol

protocol.run()
