"""`python -m asva_jax.app`: a web page that animates your image with your sound (Gradio).

  session.Studio     gradio-free: the models loaded and compiled once, one request -> mp4 + GIF
  examples           the one-click examples of a demo workdir (its held-out synthetic clips)
  ui                 the Gradio page around a Studio (the only module that imports gradio)

The command (flags, start-up) is asva_jax/commands/app.py; docs/app.md.
"""
