"""`python -m asva_jax.eval`: the command lives in asva_jax.commands.eval."""
from asva_jax.commands import eval as eval_command

eval_command.run()
