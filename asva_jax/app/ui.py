"""The Gradio page around a `session.Studio`: inputs, settings, progress, the mp4 and the GIF.

Bad input (a corrupt image, a 0.5-s audio, an unknown category, ...) is shown in the page as the
one line the sample command prints (its `AsvaError` text), and the server keeps serving. Requests
run one at a time: they share one set of models and compilations.
"""

from __future__ import annotations

import gradio as gr

from asva_jax.app.session import Settings, Studio, user_message
from asva_jax.errors import AsvaError
from asva_jax.pipeline.jobs import SCHEDULERS

API_NAME = "animate"
# Small models make small frames (the demo's are 16 x 16): show them enlarged, pixels sharp.
CSS = """
#result-gif img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#result-video video { image-rendering: pixelated; }
"""


def build(studio: Studio, examples: list[tuple[str, str]] = ()) -> gr.Blocks:
  d = studio.defaults
  source = studio.models.source
  with gr.Blocks(title="asva-jax: animate an image with a sound", analytics_enabled=False) as page:
    gr.Markdown(f"## Animate an image with a sound\nModel: `{source}` · frames of {studio.size[0]} × "
                f"{studio.size[1]}, {studio.models.spec.fps} fps. Give an image and an audio file, or a video "
                "(its first frame and its sound); the centre 2 s of the sound are animated.")
    with gr.Row():
      with gr.Column():
        # Plain file inputs: gradio's image/audio/video inputs decode (or convert with ffmpeg) before the
        # handler runs, and would answer a corrupt file with their own error instead of the library's.
        image = gr.File(label="image (any format PIL reads)", type="filepath", elem_id="image")
        audio = gr.File(label="audio (anything FFmpeg decodes), at least 2 s", type="filepath", elem_id="audio")
        video = gr.File(label="or a video: its first frame and its sound", type="filepath", elem_id="video")
        category = gr.Dropdown(
            choices=studio.classes, value=d.category or (studio.classes[0] if studio.classes else None),
            allow_custom_value=True, elem_id="category",
            label="prompt (a class, or any text: the checkpoint has a text encoder)" if studio.free_prompts
            else "category (one of the checkpoint's classes)")
        with gr.Accordion("settings", open=False):
          audio_guidance = gr.Number(d.audio_guidance, label="audio guidance (> 1 enables it)")
          text_guidance = gr.Number(d.text_guidance, label="text guidance (> 1 enables it)")
          scheduler = gr.Dropdown(list(SCHEDULERS), value=d.scheduler, label="sampler")
          steps = gr.Number(d.steps, precision=0, label="steps")
          seed = gr.Number(d.seed, precision=0, label="seed")
          start = gr.Number(None, label="start of the 2-s clip (s); empty: the centre")
        button = gr.Button("Animate", variant="primary", elem_id="animate")
      with gr.Column():
        mp4 = gr.Video(label="animation (mp4 with sound)", interactive=False, elem_id="result-video", autoplay=True)
        gif = gr.Image(label="GIF", type="filepath", interactive=False, elem_id="result-gif", height=320)
        status = gr.Textbox(label="status", interactive=False, elem_id="status")

    def animate(image, audio, video, category, audio_guidance, text_guidance, scheduler, steps, seed, start,
                progress=gr.Progress()):
      uploads = {"image": image, "audio": audio, "video": video}
      numbers = {"audio guidance": audio_guidance, "text guidance": text_guidance, "steps": steps, "seed": seed}
      empty = [name for name, value in numbers.items() if value is None]
      if empty:
        raise gr.Error(f"settings: give a number for {', '.join(empty)}", print_exception=False)
      settings = Settings(category=(category or "").strip(), audio_guidance=float(audio_guidance),
                          text_guidance=float(text_guidance), scheduler=scheduler, steps=int(steps),
                          seed=int(seed), start=None if start is None else float(start))
      try:
        result = studio.animate(**uploads, settings=settings, progress=lambda f, desc: progress(f, desc=desc))
      except AsvaError as e:
        raise gr.Error(user_message(e, uploads), print_exception=False) from None
      return str(result.mp4), str(result.gif), result.summary()

    button.click(animate, [image, audio, video, category, audio_guidance, text_guidance, scheduler, steps, seed,
                           start], [mp4, gif, status], api_name=API_NAME, concurrency_limit=1)
    if examples:
      gr.Examples([[v, c] for v, c in examples], [video, category], label="held-out clips of the demo")
  return page
