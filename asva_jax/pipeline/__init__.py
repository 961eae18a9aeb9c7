"""Sampling: the jitted denoising loop, guidance, and the image/audio -> video pipeline."""

from asva_jax.pipeline.denoise import denoise, step_noise

__all__ = ["denoise", "step_noise"]
