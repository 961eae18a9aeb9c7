"""`python -m asva_jax.eval.verify_i3d` (docs/evaluation-networks.md): the tool lives in
asva_jax.commands.verify_i3d."""
from asva_jax.commands import verify_i3d

verify_i3d.run()
