"""`python -m asva_jax.demo` (`make demo`): the command lives in asva_jax.commands.demo."""
from asva_jax.commands import demo

demo.run()
