"""Flax NNX models of AVSyncD: the video UNet and the frozen encoders."""
