"""The demo's pictures, drawn with PIL (no plotting library needed).

* `side_by_side_gif`: rows of clips, columns [real video | sampled with its own audio |
  sampled with shuffled audio], each with a strip under it that lights up with the onset
  envelope of the audio that conditioned it, so synchrony is visible frame by frame.
* `envelope_plot`: one clip's audio onset envelope against the motion energy of the videos
  sampled from it, per frame, with the true event frames marked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
COLOURS = {"audio onset": (220, 120, 0), "own audio": (30, 110, 220), "shuffled audio": (160, 160, 160),
           "real video": (40, 160, 60)}


def _save_atomic(image_or_frames, path: Path, **kwargs) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  try:
    if isinstance(image_or_frames, list):
      image_or_frames[0].save(tmp, save_all=True, append_images=image_or_frames[1:], **kwargs)
    else:
      image_or_frames.save(tmp, **kwargs)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
  return path


def _normalise(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  span = x.max() - x.min() if x.size else 0.0
  return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def side_by_side_gif(path: str | os.PathLike, columns: dict[str, np.ndarray], envelopes: dict[str, np.ndarray],
                     fps: int = 6, scale: int = 4, strip: int = 6) -> Path:
  """`columns`: title -> videos (N, F, H, W, 3) uint8; `envelopes`: title -> (N, F) audio onset
  envelope of each video's conditioning audio (a missing title gets no strip). Loops forever."""
  titles = list(columns)
  n, f, h, w, _ = columns[titles[0]].shape
  cell_w, cell_h = w * scale, h * scale + strip
  pad, header = 4, 14
  width = len(titles) * (cell_w + pad) + pad
  height = header + n * (cell_h + pad) + pad
  strength = {t: _normalise(e) for t, e in envelopes.items()}
  frames = []
  for k in range(f):
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
      x0 = pad + c * (cell_w + pad)
      draw.text((x0, 1), title, fill=INK)
      for r in range(n):
        y0 = header + r * (cell_h + pad)
        tile = Image.fromarray(np.asarray(columns[title][r, k], np.uint8)).resize((cell_w, h * scale),
                                                                                   Image.NEAREST)
        canvas.paste(tile, (x0, y0))
        if title in strength:
          level = float(np.asarray(strength[title])[r, k])
          colour = tuple(int(255 - (255 - v) * level) for v in COLOURS["audio onset"])
          draw.rectangle([x0, y0 + h * scale, x0 + cell_w - 1, y0 + cell_h - 1], fill=colour)
    frames.append(canvas.convert("P", palette=Image.ADAPTIVE, colors=255))
  return _save_atomic(frames, Path(path), format="GIF", duration=int(round(1000 / fps)), loop=0,
                      optimize=False)


def envelope_plot(path: str | os.PathLike, series: dict[str, np.ndarray], events: np.ndarray,
                  title: str, size: tuple[int, int] = (640, 360)) -> Path:
  """Line plot of per-frame series (each scaled to [0, 1]) with the true event frames as dashes."""
  width, height = size
  # The legend has its own column right of the axes, so it never hides a curve.
  left, right, top, bottom = 50, 170, 48, 50
  canvas = Image.new("RGB", size, BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  for k, line in enumerate(_wrap(draw, title, width - 2 * 10)):
    draw.text((10, 6 + 14 * k), line, fill=INK)
  num = max(len(v) for v in series.values())
  px = lambda j: left + (width - left - right) * j / max(num - 1, 1)
  py = lambda v: height - bottom - (height - top - bottom) * v
  draw.line([(left, top), (left, height - bottom), (width - right, height - bottom)], fill=INK)
  for j in range(num):
    draw.line([(px(j), height - bottom), (px(j), height - bottom + 4)], fill=INK)
    draw.text((px(j) - 3, height - bottom + 6), str(j), fill=INK)
  draw.text(((width - right + left) // 2 - 20, height - 18), "frame", fill=INK)
  draw.text((5, top - 14), "scaled", fill=INK)
  for e in np.asarray(events).tolist():
    for y in range(top, height - bottom, 8):
      draw.line([(px(e), y), (px(e), y + 4)], fill=(200, 40, 40))
  legend_x, legend_y = width - right + 20, top + 4
  for name, values in series.items():
    colour = COLOURS.get(name, INK)
    v = _normalise(values)
    draw.line([(px(j), py(v[j])) for j in range(len(v))], fill=colour, width=3)
    for j in range(len(v)):
      draw.ellipse([px(j) - 3, py(v[j]) - 3, px(j) + 3, py(v[j]) + 3], fill=colour)
    draw.line([(legend_x, legend_y + 6), (legend_x + 20, legend_y + 6)], fill=colour, width=3)
    draw.text((legend_x + 25, legend_y), name, fill=INK)
    legend_y += 14
  draw.line([(legend_x, legend_y + 6), (legend_x + 20, legend_y + 6)], fill=(200, 40, 40))
  draw.text((legend_x + 25, legend_y), "true audio events", fill=INK)
  return _save_atomic(canvas, Path(path), format="PNG")


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: int) -> list[str]:
  """`text` broken at spaces (or inside a word longer than a line) into lines at most `width` pixels wide."""
  lines, line = [], ""
  for word in text.split(" "):
    while draw.textlength(word) > width:  # a path without spaces: cut it where it overflows
      cut = max(k for k in range(1, len(word) + 1) if draw.textlength(word[:k]) <= width)
      if line:
        lines.append(line)
        line = ""
      lines.append(word[:cut])
      word = word[cut:]
    candidate = f"{line} {word}" if line else word
    if draw.textlength(candidate) <= width:
      line = candidate
    else:
      lines.append(line)
      line = word
  if line:
    lines.append(line)
  return lines
