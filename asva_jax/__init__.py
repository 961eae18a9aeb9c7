"""asva-jax: AVSyncD (Audio-Synchronized Visual Animation) in JAX / Flax NNX.

Loaders take a converted checkpoint folder (see `convert.from_pytorch`) or one
of its component sub-folders.
"""

__version__ = "0.1.0"


def load_unet(path, **options):
  from asva_jax.models.unet_3d import load_unet as _load
  return _load(path, **options)


def load_vae(path, **options):
  from asva_jax.models.vae import load_vae as _load
  return _load(path, **options)


def load_text_encoder(path, **options):
  from asva_jax.models.clip_text import load_text_encoder as _load
  return _load(path, **options)


def load_audio_encoder(path, **options):
  from asva_jax.models.imagebind_audio import load_audio_encoder as _load
  return _load(path, **options)


def load_tokenizer(path):
  from asva_jax.models.clip_tokenizer import load_tokenizer as _load
  return _load(path)


def load_text_encodings(path):
  from asva_jax.text_encodings import load_text_encodings as _load
  return _load(path)
