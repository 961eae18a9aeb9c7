"""The built-in demo: train a small AVSyncD from nothing on synthetic data and show that sound drives motion."""
