"""`python -m asva_jax.app` for real: one server on 127.0.0.1 on the tiny checkpoint, driven through its
HTTP API with gradio_client and in a real headless browser.

API: a good request returns an mp4 of 12 frames at 6 fps with sound and a GIF, and compiles nothing
(the start-up did); bad input shows the sample command's own one-line message, and the server keeps
serving. Browser (Debian's chromium through selenium): load the page, upload an image and an audio
file, click Animate, wait for the video element, and check that the screenshot shows it. `.ci/run`
installs chromium when it runs as root and then requires that test (ASVA_BROWSER_TEST=required);
elsewhere it runs when a chromium and its driver are found.
"""

import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from asva_jax.audio import load_audio_track
from asva_jax.commands import sample
from asva_jax.media.video import decode_frames
from tests.sampling_checkpoint import media, tiny_checkpoint, write_media

ROOT = Path(__file__).parents[1]
# The page's defaults, hence what the start-up compiles: small, so the tests stay fast.
FAST = ["--scheduler=ddim", "--steps=2", "--audio_guidance=4.0", "--text_guidance=1.0"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def serve(ckpt, log: Path, *args: str, timeout: float = 300):
  """Yields the URL once the server listens; stops it (SIGTERM, then SIGKILL) afterwards."""
  port = free_port()
  env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  with open(log, "w") as out:
    proc = subprocess.Popen([sys.executable, "-m", "asva_jax.app", f"--ckpt={ckpt}", f"--port={port}", *FAST, *args],
                            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
  url = f"http://127.0.0.1:{port}/"
  try:
    deadline = time.monotonic() + timeout
    while "Running on local URL" not in log.read_text():
      if proc.poll() is not None or time.monotonic() > deadline:
        raise AssertionError(f"the app did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
      time.sleep(0.5)
    yield url, proc
  finally:
    proc.terminate()
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


CATEGORY = "lions roaring"
MAX_UPLOAD_KB = 200  # above the test media (< 50 KB each)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
BROWSER_REQUIRED = os.environ.get("ASVA_BROWSER_TEST") == "required"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  folder = tmp_path_factory.mktemp("app")
  folders = []
  with serve(tiny_checkpoint(), folder / "server.log", f"--max_upload={MAX_UPLOAD_KB}kb") as (url, proc):
    yield SimpleNamespace(url=url, proc=proc, log=folder / "server.log", folders=folders,
                          client=Client(url, verbose=False, download_files=str(folder / "downloads")))
  assert not [f for f in folders if f.exists()], "the stopped app left its temporary folder"


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


def test_good_requests_return_mp4_with_sound_and_gif_without_compiling(server):
  client, log = server.client, server.log
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


def test_bad_input_shows_the_cli_message_and_the_server_keeps_serving(server, tmp_path, capsys):
  client, proc = server.client, server.proc
  good = media(2.0)
  short = write_media(tmp_path, 0.5, name="short")["audio"]
  corrupt = tmp_path / "corrupt.png"
  corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
  cases = [
      (dict(image=good["image"], audio=short), [f"--image={good['image']}", f"--audio={short}"]),
      (dict(image=corrupt, audio=good["audio"]), [f"--image={corrupt}", f"--audio={good['audio']}"]),
      (dict(image=good["image"], audio=good["audio"], category="purple cats"),
       [f"--image={good['image']}", f"--audio={good['audio']}"]),
      (dict(image=good["image"], audio=good["audio"], video=good["video"]),
       [f"--image={good['image']}", f"--audio={good['audio']}", f"--video={good['video']}"]),
  ]
  for request, args in cases:
    category = request.pop("category", CATEGORY)
    with pytest.raises(AppError) as e:
      animate(client, category=category, **request)
    expected = cli_error(args + [f"--category={category}"], capsys)
    for f in (short, corrupt, good["image"], good["audio"], good["video"]):
      expected = expected.replace(str(f), f.name)  # the page names an upload by the user's file name
    assert str(e.value) == expected
    assert "\n" not in str(e.value)
  # an upload over --max_upload is refused
  big = tmp_path / "big.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)).save(big)
  assert big.stat().st_size > MAX_UPLOAD_KB * 1024
  with open(big, "rb") as f:  # straight to the server's upload route (gradio_client would refuse it itself)
    response = httpx.post(server.url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")})
  assert response.status_code == 413
  # accepted uploads go to the app's own temporary folder, which it removes when it stops (fixture)
  with open(good["image"], "rb") as f:
    response = httpx.post(server.url + "gradio_api/upload", files={"files": ("clip.png", f, "image/png")})
  uploaded = Path(response.json()[0])
  assert uploaded.is_file() and uploaded.parents[1].name == "uploads" and uploaded.parents[2].name.startswith("asva-app-")
  server.folders.append(uploaded.parents[2])
  assert proc.poll() is None
  mp4, _, _ = animate(client, image=good["image"], audio=good["audio"])
  assert decode_frames(mp4).frames.shape[0] == 12


@pytest.fixture
def browser():
  assert CHROMIUM and DRIVER, "ASVA_BROWSER_TEST=required but chromium or chromedriver is missing"
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
              "--autoplay-policy=no-user-gesture-required"):
    options.add_argument(arg)
  driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
  try:
    yield driver
  finally:
    driver.quit()


def shot(element) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"))


@pytest.mark.skipif(not (CHROMIUM and DRIVER) and not BROWSER_REQUIRED,
                    reason="no chromium + chromedriver here (.ci/run installs them when root)")
def test_browser_uploads_animates_and_shows_the_video(server, browser):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import WebDriverWait
  files = media(2.0)
  browser.get(server.url)
  wait = WebDriverWait(browser, 120)
  wait.until(ec.element_to_be_clickable((By.ID, "animate")))
  before = shot(browser.find_element(By.ID, "result-video"))
  browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(files["image"]))
  browser.find_element(By.CSS_SELECTOR, "#audio input[type=file]").send_keys(str(files["audio"]))
  # both uploads done: each file block then shows its file's size
  wait.until(lambda d: all("KB" in d.find_element(By.ID, block).text for block in ("image", "audio")))
  browser.find_element(By.ID, "animate").click()
  video = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result-video video")))
  wait.until(lambda d: video.get_attribute("src") and d.execute_script("return arguments[0].readyState", video) >= 2)
  assert "12 frames at 6 fps" in browser.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value")
  after = shot(browser.find_element(By.ID, "result-video"))
  # the video block now shows the animation's frame (the tiny random model's colourful noise), not the
  # empty placeholder it showed before
  colours = lambda a: len(np.unique(a.reshape(-1, 3), axis=0))
  assert colours(after) > 4 * colours(before) and colours(after) > 200


def test_a_checkpoint_with_a_text_encoder_takes_any_prompt(tmp_path):
  """The page's studio on a converted checkpoint that has a CLIP text encoder (text_encoder/ +
  tokenizer/, as convert.from_pytorch writes them): a prompt that is no stored class is encoded."""
  import shutil as sh

  from transformers import CLIPTextModel as TorchCLIPTextModel

  from asva_jax.app.session import Settings, Studio
  from asva_jax.component_folders import save_module
  from asva_jax.pipeline import load_models
  from convert.clip_text import copy_tokenizer, import_text_encoder
  from tests.reference_models import randomize, tiny_clip_text_config, write_tiny_tokenizer
  from tests.sampling_checkpoint import TEXT_DIM
  ckpt = tmp_path / "ckpt"
  sh.copytree(tiny_checkpoint(), ckpt)
  vocab = write_tiny_tokenizer(tmp_path / "tokenizer")
  torch_model = TorchCLIPTextModel(tiny_clip_text_config(vocab, hidden_size=TEXT_DIM)).eval()
  randomize(torch_model)
  torch_model.save_pretrained(tmp_path / "text_encoder")
  save_module(ckpt / "text_encoder", *import_text_encoder(tmp_path / "text_encoder"))
  copy_tokenizer(tmp_path / "tokenizer", ckpt / "tokenizer")
  files = media(2.0)
  settings = Settings(category="a dog and a cat", scheduler="ddim", steps=2)
  studio = Studio(load_models(ckpt), settings)
  try:
    assert studio.free_prompts
    result = studio.animate(image=str(files["image"]), audio=str(files["audio"]), settings=settings)
    assert decode_frames(result.mp4).frames.shape == (12, 32, 32, 3)
    assert "a dog and a cat" in studio.models.text_encodings.used
  finally:
    studio.close()
  assert not studio.folder.exists()


def test_demo_examples_are_the_held_out_clips_the_demo_writes(tmp_path):
  """On a folder laid out as `make demo` lays out its workdir (the synthetic dataset under
  WORKDIR/data/synthetic, written by the demo's own writer), the examples are its held-out videos
  with their prompts; classes the model does not know are left out; any other folder has none."""
  import json

  from asva_jax.app.examples import demo_examples
  from asva_jax.prep.synthetic import write_dataset
  write_dataset(tmp_path / "data" / "synthetic", 2, 3, 0, height=16, width=16, test_fraction=0.34, progress=False)
  mapping = json.loads((tmp_path / "data" / "synthetic" / "class_mapping.json").read_text())
  test = (tmp_path / "data" / "synthetic" / "test.txt").read_text().split()
  examples = demo_examples(str(tmp_path), sorted(mapping.values()))
  assert len(examples) == len(test) == 2
  for (video, prompt), line in zip(examples, test):
    assert Path(video).is_file() and video.endswith(line) and prompt == mapping[line.split("/")[0]]
  known = sorted(mapping.values())[:1]
  assert [p for _, p in demo_examples(str(tmp_path), known)] == known
  assert demo_examples(str(tiny_checkpoint()), known) == []
