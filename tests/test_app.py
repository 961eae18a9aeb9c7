"""`python -m asva_jax.app` for real: a server on 127.0.0.1 on the tiny checkpoint, driven through its
HTTP API with gradio_client. A good request returns an mp4 of 12 frames at 6 fps with sound and a
GIF, and compiles nothing (the start-up did); bad input shows the sample command's own one-line
message, and the server keeps serving."""

import re

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from asva_jax.audio import load_audio_track
from asva_jax.commands import sample
from asva_jax.media.video import decode_frames
from tests.app_server import serve
from tests.sampling_checkpoint import media, tiny_checkpoint, write_media

CATEGORY = "lions roaring"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
  folder = tmp_path_factory.mktemp("app")
  with serve(tiny_checkpoint(), folder / "server.log") as (url, proc):
    yield Client(url, verbose=False, download_files=str(folder / "downloads")), proc, folder / "server.log"


def animate(client, *, image=None, audio=None, video=None, category=CATEGORY, seed=0):
  files = [None if f is None else handle_file(str(f)) for f in (image, audio, video)]
  return client.predict(*files, category, 4.0, 1.0, "ddim", 2, seed, None, api_name="/animate")


def cli_error(args, capsys) -> str:
  """The one line `python -m asva_jax.sample` prints for the same input (run in this process)."""
  with pytest.raises(SystemExit) as e:
    sample.run(["sample", f"--ckpt={tiny_checkpoint()}", "--steps=2", "--scheduler=ddim", "--out=/nonexistent/o.mp4",
                *args])
  assert e.value.code == 2
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert line.startswith("error: ")
  return line.removeprefix("error: ")


def test_good_requests_return_mp4_with_sound_and_gif_without_compiling(app):
  client, _, log = app
  files = media(2.0)
  assert int(re.search(r"compiled: (\d+) XLA compilations at start-up", log.read_text())[1]) > 0
  results = [animate(client, image=files["image"], audio=files["audio"], seed=s) for s in (0, 1)]
  for mp4, gif, status in results:
    decoded = decode_frames(mp4)
    assert decoded.frames.shape == (12, 32, 32, 3)
    assert np.allclose(np.diff(decoded.times), 1 / 6, atol=1e-3)
    audio, _ = load_audio_track(mp4)
    assert abs(len(audio) / 16000 - 2.0) < 0.1 and np.abs(audio).max() > 0.05
    with Image.open(gif) as im:
      assert im.n_frames == 12
    assert status.endswith("XLA compilations in this request: 0"), status
  assert not np.array_equal(decode_frames(results[0][0]).frames, decode_frames(results[1][0]).frames)
  # a video input (its first frame and its sound) gives the same kind of result
  mp4, _, status = animate(client, video=files["video"], seed=2)
  assert decode_frames(mp4).frames.shape[0] == 12 and status.startswith("12 frames at 6 fps")


def test_bad_input_shows_the_cli_message_and_the_server_keeps_serving(app, tmp_path, capsys):
  client, proc, _ = app
  good = media(2.0)
  short = write_media(tmp_path, 0.5, name="short")["audio"]
  corrupt = tmp_path / "corrupt.png"
  corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
  cases = [
      (dict(image=good["image"], audio=short), [f"--image={good['image']}", f"--audio={short}"]),
      (dict(image=corrupt, audio=good["audio"]), [f"--image={corrupt}", f"--audio={good['audio']}"]),
      (dict(image=good["image"], audio=good["audio"], category="purple cats"),
       [f"--image={good['image']}", f"--audio={good['audio']}"]),
  ]
  for request, args in cases:
    category = request.pop("category", CATEGORY)
    with pytest.raises(AppError) as e:
      animate(client, category=category, **request)
    expected = cli_error(args + [f"--category={category}"], capsys)
    for f in (short, corrupt, good["image"], good["audio"]):
      expected = expected.replace(str(f), f.name)  # the page names an upload by the user's file name
    assert str(e.value) == expected
    assert "\n" not in str(e.value)
  assert proc.poll() is None
  mp4, _, _ = animate(client, image=good["image"], audio=good["audio"])
  assert decode_frames(mp4).frames.shape[0] == 12
