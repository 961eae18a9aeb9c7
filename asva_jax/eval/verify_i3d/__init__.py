"""`python -m asva_jax.eval.verify_i3d` (see __main__.py); the tool is asva_jax.commands.verify_i3d."""
