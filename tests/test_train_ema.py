"""EMA weights (`train.ema_decay`, asva_jax.training.ema) against references outside the code:
optax's EMA on the same parameter sequence, the parameters the run itself saved at every step,
an uninterrupted run (for a resumed one), and the checkpoint's `ema` item read with Orbax directly
(for what sampling and export use)."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from asva_jax.training import ema
from tests.training_fixtures import shards  # noqa: F401 - fixture
from tests.training_fixtures import NUM_STEPS, tiny_config, use_cache

DECAY = 0.8  # far from 1, so that every step moves the average visibly


def name(path) -> str:
  """A leaf path, spelt alike whether its keys are ints (NNX) or strings (Orbax's restored dicts)."""
  return jax.tree_util.keystr(tuple(path)).replace("'", "").removesuffix("[value]")


def flat(tree) -> dict:
  return {name(path): np.asarray(v) for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def trained(workdir, step=None, raw_weights=False) -> dict:
  from tests.training_fixtures import trained_params
  return {name(path): v for path, v in trained_params(workdir, step, raw_weights).items()}


def param_sequence(n: int) -> list[dict]:
  rng = np.random.default_rng(0)
  return [{"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": {"c": jnp.asarray(rng.normal(size=5),
                                                                                         jnp.float32)}}
          for _ in range(n)]


def test_update_equals_optax_ema_on_the_same_parameter_sequence():
  """Started at p0, ema_k = p0 + optax.ema(d, debias=False) of (p_j - p0), j = 1..k (optax's EMA
  starts at zeros; the difference to p0 starts there too)."""
  params = param_sequence(6)
  config = ml_collections.ConfigDict({"ema_decay": DECAY, "ema_warmup": False})
  reference = optax.ema(DECAY, debias=False)
  state = reference.init(params[0])
  average = params[0]
  for n, p in enumerate(params[1:]):
    average = ema.ema_update(average, p, ema.decay_at(config, jnp.asarray(n)))
    expected, state = reference.update(jax.tree.map(jnp.subtract, p, params[0]), state)
    for name, value in flat(average).items():
      np.testing.assert_allclose(value, flat(jax.tree.map(jnp.add, expected, params[0]))[name], rtol=1e-5,
                                 atol=1e-6, err_msg=name)


def test_warm_up_decay_is_the_documented_schedule():
  """d_n = min(decay, (1 + n) / (10 + n)): optax's Polyak update (`incremental_update`) with that step."""
  params = param_sequence(40)
  config = ml_collections.ConfigDict({"ema_decay": 0.9, "ema_warmup": True})
  average = expected = params[0]
  for n, p in enumerate(params[1:]):
    d = min(0.9, (1 + n) / (10 + n))
    assert float(ema.decay_at(config, jnp.asarray(n))) == pytest.approx(d)
    average = ema.ema_update(average, p, ema.decay_at(config, jnp.asarray(n)))
    expected = optax.incremental_update(p, expected, 1 - d)
  for name, value in flat(average).items():
    np.testing.assert_allclose(value, flat(expected)[name], rtol=1e-5, atol=1e-6, err_msg=name)


def ema_run(tmp_path_factory, data_dir, name="ema_run"):
  """The tiny training run with EMA weights, a checkpoint at every step (made once)."""
  from asva_jax.training.trainer import train
  workdir = tmp_path_factory.getbasetemp() / name
  if not (workdir / "checkpoints" / str(NUM_STEPS) / "commit_success.txt").is_file():
    use_cache(tmp_path_factory)
    train(ema_config(data_dir), workdir)
  return workdir


def ema_config(data_dir, **overrides):
  return tiny_config(data_dir, **{"train.ema_decay": DECAY, "train.checkpoint_every": 1,
                                  "train.learning_rate": 1e-2, **overrides})


@pytest.fixture(scope="module")
def ema_workdir(tmp_path_factory, shards):
  return ema_run(tmp_path_factory, shards)


def saved(workdir, step: int, item: str) -> dict:
  """The checkpoint's `item` read with Orbax itself, as a flat {path: array}."""
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as checkpointer:
    tree = checkpointer.restore(workdir / "checkpoints" / str(step) / item)
  return {name: np.asarray(v) for name, v in flat(tree).items()}


def test_the_step_averages_the_parameters_it_saved(ema_workdir):
  """ema_8 = the recurrence over the params saved at steps 1..8, from the initial params (step 0)."""
  initial = trained(ema_workdir, 0, raw_weights=True)
  steps = [saved(ema_workdir, s, "params") for s in range(1, NUM_STEPS + 1)]
  final = saved(ema_workdir, NUM_STEPS, "ema")
  assert final.keys() == steps[0].keys() == initial.keys()
  names, expected = sorted(final), initial
  for p in steps:
    expected = {k: DECAY * expected[k] + (1 - DECAY) * p[k] for k in names}
  for k in names:
    np.testing.assert_allclose(final[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
  assert max(float(np.abs(final[k] - steps[-1][k]).max()) for k in names) > 1e-4  # not the raw params


def test_resume_with_ema_equals_the_uninterrupted_run(ema_workdir, shards, tmp_path, tmp_path_factory):
  """The state at a kill is the last committed step: a run cut to step 4 and rerun ends equal."""
  from asva_jax.training.trainer import train
  workdir = tmp_path / "run"
  shutil.copytree(ema_workdir, workdir)
  for step in range(5, NUM_STEPS + 1):
    shutil.rmtree(workdir / "checkpoints" / str(step))
  use_cache(tmp_path_factory)
  train(ema_config(shards), workdir)
  for item in ("ema", "params"):
    resumed, reference = saved(workdir, NUM_STEPS, item), saved(ema_workdir, NUM_STEPS, item)
    assert resumed.keys() == reference.keys()
    for k in resumed:
      np.testing.assert_array_equal(resumed[k], reference[k], err_msg=f"{item} {k}")


def test_turning_ema_on_or_changing_its_decay_refuses(ema_workdir, shards, tmp_path):
  """The EMA is part of the state a run defines (like AdamW's betas): a changed decay is refused."""
  from asva_jax.training.resume_check import IncompatibleRun
  from asva_jax.training.trainer import train
  workdir = tmp_path / "run"
  shutil.copytree(ema_workdir, workdir)
  for decay in (0.0, 0.5):
    with pytest.raises(IncompatibleRun, match=rf"--config.train.ema_decay: {DECAY} in the workdir, {decay} now"):
      train(ema_config(shards, **{"train.ema_decay": decay}), workdir)


def test_sampling_and_export_use_the_ema_weights_unless_asked_for_raw(ema_workdir, tmp_path, capsys):
  from flax import nnx
  from convert import to_pytorch
  from convert.unet import import_unet
  from asva_jax.pipeline import load_models
  ema_saved, raw_saved = saved(ema_workdir, NUM_STEPS, "ema"), saved(ema_workdir, NUM_STEPS, "params")
  for raw, expected in ((False, ema_saved), (True, raw_saved)):
    loaded = trained(ema_workdir, raw_weights=raw)
    assert loaded.keys() == expected.keys()
    for k, v in loaded.items():
      np.testing.assert_array_equal(v, expected[k], err_msg=k)
  load_models(ema_workdir)
  assert "EMA weights (decay 0.8; --raw_weights for the raw ones)" in capsys.readouterr().out
  for raw, expected in ((False, ema_saved), (True, raw_saved)):
    out = tmp_path / ("raw" if raw else "ema")
    with pytest.raises(SystemExit) as e:
      to_pytorch.run(["to_pytorch", f"--ckpt={ema_workdir}", f"--out={out}", "--components=unet"]
                     + ["--raw_weights"] * raw)
    assert not e.value.code
    assert ("raw weights (not the EMA)" if raw else "EMA weights") in capsys.readouterr().out
    unet, _ = import_unet(out / "unet")
    exported = flat(nnx.to_pure_dict(nnx.state(unet)))
    unet_params = {k: v for k, v in expected.items() if k.startswith("[unet]")}
    assert unet_params
    for k, v in unet_params.items():
      np.testing.assert_array_equal(exported[k.removeprefix("[unet]")], v, err_msg=k)

