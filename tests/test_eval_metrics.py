"""The metrics of `eval.py` against the original's end-to-end run (fixture `metrics/`): first from
its per-clip intermediates (pure functions), then from the raw clips through all four networks."""

import json

import numpy as np
import pytest

from asva_jax.eval import frechet, metrics
from asva_jax.eval.evaluate import METRICS, load_detectors
from tests.eval_fixtures import DATA, models_dir

FIXTURE = DATA / "metrics"
RTOL = 1e-5


@pytest.fixture(scope="module")
def io():
  return dict(np.load(FIXTURE / "io.npz"))


@pytest.fixture(scope="module")
def results():
  return json.loads((FIXTURE / "results.json").read_text())


def rel(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


def check_against_original(clips: dict, summary: dict, results: dict, names) -> None:
  """Per-clip values (eval.py's records; its "IT" field holds IA, docs/reference.md §9.5) and summaries."""
  for key in ("IA", "RelSync", "AlignSync"):
    expected = [results["instance_metrics"][n][key] for n in names]
    assert rel(clips[key], expected) < RTOL, key
  for key, value in summary.items():
    assert rel(value, results[key]) < RTOL, key


def test_metrics_from_original_intermediates(io, results):
  clips = metrics.per_clip(ia_gen=io["gen_ia"], it_gen=io["gen_it"], score_gen=io["gen_avsync_score"],
                           score_ref=io["gt_avsync_score"], ia_ref_first=io["gt_first_frame_ia"])
  assert rel(clips["IA"], io["gen_ia_mean"]) < RTOL and rel(clips["IT"], io["gen_it_mean"]) < RTOL
  assert rel(clips["RelSync"], io["relsync"]) < RTOL
  assert rel(metrics.align_prob(io["gen_ia"], io["gt_first_frame_ia"]), io["align_prob"]) < RTOL
  assert rel(clips["AlignSync"], io["alignsync"]) < RTOL
  summary = metrics.summarize(clips)
  assert sorted(summary) == sorted(k for k in results if k.endswith(("_mean", "_std")))
  check_against_original(clips, summary, results, list(io["gen_clip_names"]))
  assert rel(frechet.fid(io["fid_features_gen"], io["fid_features_gt"]), io["FID"]) < RTOL
  assert rel(frechet.fvd(io["fvd_features_gen"], io["fvd_features_gt"]), io["FVD"]) < RTOL


def test_standalone_script_variants(io):
  """`compute_relsync` / `compute_alignsync` (the standalone script): the same formulas, other inputs."""
  # Softmax of [s_ref, s_gen] = sigmoid(s_gen - s_ref); checked on the original's own outputs.
  s = np.array([[0.3, -1.2], [100.0, 101.5], [-90.0, 3.0]])
  softmax = np.exp(s - s.max(1, keepdims=True))
  softmax = softmax[:, 1] / softmax.sum(1)
  assert rel(metrics.relsync(s[:, 1], s[:, 0]), softmax) < 1e-12
  assert np.isfinite(metrics.relsync([1000.0], [0.0])).all()  # eval.py's exp() form overflows there
  # AlignSync with a reference of 1: the align probability itself, bounded by (0, 1).
  p = metrics.alignsync(io["gen_ia"], io["gt_first_frame_ia"], [0.0] * 4, [0.0] * 4) * 2
  assert rel(p, io["align_prob"]) < RTOL


def test_original_pairing_of_unsorted_lists(io):
  """eval.py sorts the video names in place but zips them with the categories as given."""
  setup = json.loads((FIXTURE / "setup.json").read_text())
  names, cats = metrics.original_pairing(setup["gt_video_names_given"], setup["categories_given"])
  assert names == list(io["gt_names_sorted"]) and cats == list(io["categories_as_zipped"])
  names, cats = list(io["gt_names_sorted"]), list(io["categories_as_zipped"])
  shuffled = metrics.original_pairing(names[::-1], cats[::-1])
  assert shuffled == (names, cats[::-1])  # the first sorted video gets the first *given* category
  with pytest.raises(ValueError):
    metrics.original_pairing(names, cats[:1])


def test_generated_names(io):
  names = [metrics.generated_clip_name(v, k) for v in io["gt_names_sorted"] for k in range(2)]
  assert names == list(io["gen_clip_names"])


def test_mean_std():
  assert metrics.mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
  assert np.isnan(metrics.mean_std([0.5])[1])


@pytest.fixture(scope="module")
def detectors():
  """Every network, loaded as the CLI loads them (the reduced I3D stands in for the TorchScript file)."""
  return load_detectors(models_dir(), METRICS)


def test_end_to_end(io, results, detectors):
  """Raw clips (frames in [0, 1] at 24 x 32, log-mels) -> every metric, as eval.py on the same data."""
  clip = lambda v: np.transpose(v, (0, 1, 3, 4, 2))  # (clips, F, C, H, W) -> channels-last
  setup = json.loads((FIXTURE / "setup.json").read_text())
  names, cats = metrics.original_pairing(setup["gt_video_names_given"], setup["categories_given"])
  per_video = len(io["gen_clip_names"]) // len(names)
  categories = [c for c in cats for _ in range(per_video)]
  text = detectors.text_embeddings(categories)
  ref = detectors.features(clip(io["gt_video"]), io["gt_mel"][:, 0], first_frame_only=True)
  gen = detectors.features(clip(io["gen_video"]), io["gen_mel"][:, 0],
                           text_emb=np.stack([text[c] for c in categories]))
  # The features themselves (float32 networks: ~1e-4).
  assert rel(gen["fid"], io["fid_features_gen"]) < 1e-4 and rel(ref["fid"], io["fid_features_gt"]) < 1e-4
  assert rel(gen["fvd"], io["fvd_features_gen"]) < 1e-4 and rel(ref["fvd"], io["fvd_features_gt"]) < 1e-4
  assert rel(gen["avsync"], io["gen_avsync_score"]) < 1e-4
  assert rel(ref["ia"], io["gt_first_frame_ia"]) < 1e-4
  assert rel(gen["ia"], io["gen_ia"]) < 1e-4 and rel(gen["it"], io["gen_it"]) < 1e-4
  # The metrics, to ~1e-5 as the original's.
  clips = metrics.per_clip(ia_gen=gen["ia"], it_gen=gen["it"], score_gen=gen["avsync"],
                           score_ref=ref["avsync"], ia_ref_first=ref["ia"])
  summary = metrics.summarize(clips)
  summary["FID"] = frechet.fid(gen["fid"], ref["fid"])
  summary["FVD"] = frechet.fvd(gen["fvd"], ref["fvd"])
  check_against_original(clips, summary, results, list(io["gen_clip_names"]))
  assert rel(clips["IT"], io["gen_it_mean"]) < RTOL
