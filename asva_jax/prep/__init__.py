"""Data preparation as library code: shard building, synthetic videos, VAE latents.

`python -m data_prep.build` and `python -m data_prep.synthetic` are the command lines on top;
the trainer asks `build` and `synthetic` for the tiny and demo configs' data.
"""
