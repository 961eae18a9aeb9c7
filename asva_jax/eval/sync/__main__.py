"""`python -m asva_jax.eval.sync`: the command lives in asva_jax.commands.eval_sync."""
from asva_jax.commands import eval_sync

eval_sync.run()
