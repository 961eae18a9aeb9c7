"""The model's fixed facts (docs/reference.md §6): one definition each, imported wherever they are used.

AVSyncD generates 12 frames at 6 fps from the matching 2 s of 16 kHz audio; prompts are CLIP
token sequences of 77; latents are SD1.5 VAE samples times 0.18215.
"""

SAMPLE_RATE = 16000            # audio samples per second
FPS = 6                        # video frames per second
NUM_FRAMES = 12                # frames per generated clip
CLIP_SECONDS = NUM_FRAMES / FPS  # 2.0: seconds of audio and video per clip
NULL_PROMPT = ""               # the unconditional prompt (classifier-free guidance)
TEXT_LENGTH = 77               # CLIP text tokens per prompt
DEFAULT_FRAME_SIZE = (256, 256)  # (height, width) of AVSync15 and Landscapes clips
SD15_SCALING_FACTOR = 0.18215  # latents = VAE sample x this (Stable Diffusion 1.5)
