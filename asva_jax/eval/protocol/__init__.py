"""The paper's evaluation protocol in one command (`python -m asva_jax.eval.protocol`, docs/evaluation.md).

What sits here is the evaluation side of it, free of the sampler: the published values to compare
with (`published`), the bookkeeping that makes generation resumable (`run_state`) and the report
(`report`). The command itself, which samples through `asva_jax.pipeline` and scores through
`asva_jax.eval.evaluate`, is asva_jax/commands/protocol.py.
"""
