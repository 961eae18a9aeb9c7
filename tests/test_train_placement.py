"""Where the training program puts every array on a data=4 x fsdp=2 mesh of 8 simulated CPU devices.

One subprocess (8 host-platform devices) builds the trainer's program
(asva_jax.training.program) for the tiny model twice, with the frozen base
replicated and sharded, runs one step (sharded base), and reports for every array which part
each device holds (its addressable shards' index ranges). The expectations here
are written from the mesh alone: "split over fsdp" = the devices of one fsdp
column hold the same half along one dimension, the two columns complementary
halves, every other dimension whole; "replicated" = every device holds all.
The same subprocess lowers benchmarks.tpu_compile's program for these devices
with frames and with cached VAE latents.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training_fixtures import ROOT, subprocess_env, tiny_config

DATA, FSDP = 4, 2
MIN_SIZE = 512          # the tiny model has tensors on both sides of it
BATCH = 8
FRAMES = (16, 16)
TINY_VAE = dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4)  # factor 2


def placement(x) -> dict:
  """{"shape", "parts": {device id: [[start, stop] per dimension]}} of a jax.Array."""
  parts = {}
  for shard in x.addressable_shards:
    parts[shard.device.id] = [[s.start or 0, n if s.stop is None else s.stop]
                              for s, n in zip(shard.index, x.shape)]
  return {"shape": list(x.shape), "parts": parts}


def placements(tree) -> dict:
  import jax
  return {jax.tree_util.keystr(path): placement(x)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def vae_config():
  one_level = dict(tiny_config("").model.unet)
  return tiny_config("", **{"model.autoencoder": "vae", "model.vae": TINY_VAE,
                            "model.unet": {**one_level, "in_channels": 4, "out_channels": 4}})


def report() -> None:
  """Runs in the 8-device subprocess; prints one JSON line."""
  import jax
  import numpy as np
  from benchmarks import tpu_compile
  from asva_jax.parallel import sharding
  from asva_jax.training.flops import step_flops
  from asva_jax.training.build import build_models
  from asva_jax.training.program import batch_shapes, build_program
  out = {"mesh": None, "runs": {}, "tpu_compile": {}}
  for shard_frozen in (False, True):
    config = tiny_config("", **{"mesh.data": DATA, "mesh.fsdp": FSDP, "mesh.min_shard_size": MIN_SIZE,
                                "mesh.shard_frozen": shard_frozen, "train.batch_size": BATCH})
    model = build_models(config).model
    program, state, frozen = build_program(model, config, sharding.make_mesh(config.mesh))
    out["mesh"] = [[d.id for d in row] for row in program.mesh.devices]
    rng = np.random.default_rng(0)
    shapes = batch_shapes(model, BATCH, FRAMES, latents=False)
    local = {k: rng.integers(0, 256, v.shape).astype(v.dtype) for k, v in shapes.items()}
    batch = sharding.global_batch(local, program.mesh)
    run = {"params": placements(state["params"]), "opt_state": placements(state["opt_state"]),
           "step": placement(state["step"]), "frozen": placements(frozen), "batch": placements(batch)}
    if shard_frozen:  # one compile: the step's outputs land where its inputs were
      state, _ = program.step(state, frozen, batch)
      run["after_step"] = {"params": placements(state["params"]), "opt_state": placements(state["opt_state"])}
    out["runs"][str(shard_frozen)] = run
  for latents in (False, True):
    lowered, about = tpu_compile.lower(vae_config(), jax.devices(), fsdp=FSDP, batch_per_chip=1,
                                       frame_size=FRAMES[0], latents=latents)
    inputs = {k: [list(a.shape), str(a.dtype)] for k, a in lowered.args_info[0][2].items()}
    out["tpu_compile"][str(latents)] = {"about": about, "inputs": inputs, "flops": step_flops(lowered, 1)}
  print(json.dumps(out))


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
  env = subprocess_env(tmp_path_factory, XLA_FLAGS=f"--xla_force_host_platform_device_count={DATA * FSDP}")
  done = subprocess.run([sys.executable, "-c", "from tests.test_train_placement import report; report()"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def mesh_position(reported) -> dict[str, tuple[int, int]]:
  """device id (as JSON keys it) -> (data row, fsdp column)."""
  return {str(dev): (d, f) for d, row in enumerate(reported["mesh"]) for f, dev in enumerate(row)}


def is_replicated(p) -> bool:
  whole = [[0, n] for n in p["shape"]]
  return len(p["parts"]) == DATA * FSDP and all(part == whole for part in p["parts"].values())


def is_split_over_fsdp(p, position) -> bool:
  """One dimension halved by fsdp column (same half down a column), every other dimension whole."""
  if len(p["parts"]) != DATA * FSDP:
    return False
  by_column = {}
  for dev, part in p["parts"].items():
    by_column.setdefault(position[dev][1], []).append(part)
  if any(any(part != parts[0] for part in parts) for parts in by_column.values()):
    return False  # differs along data: not (only) an fsdp split
  columns = [by_column[f][0] for f in range(FSDP)]
  split = [dim for dim, n in enumerate(p["shape"]) if any(c[dim] != [0, n] for c in columns)]
  if len(split) != 1:
    return False
  dim, n = split[0], p["shape"][split[0]]
  return sorted(tuple(c[dim]) for c in columns) == [(f * n // FSDP, (f + 1) * n // FSDP) for f in range(FSDP)]


def size(p) -> int:
  n = 1
  for d in p["shape"]:
    n *= d
  return n


def check_split_by_size(tree: dict, position) -> None:
  big = [path for path, p in tree.items() if size(p) >= MIN_SIZE]
  small = [path for path, p in tree.items() if size(p) < MIN_SIZE]
  assert big and small  # both rules are exercised
  assert [path for path in big if not is_split_over_fsdp(tree[path], position)] == []
  assert [path for path in small if not is_replicated(tree[path])] == []


@pytest.mark.parametrize("shard_frozen", ["False", "True"])
def test_trainable_params_over_min_size_are_split_over_fsdp(reported, shard_frozen):
  run, position = reported["runs"][shard_frozen], mesh_position(reported)
  check_split_by_size(run["params"], position)
  if shard_frozen == "True":
    check_split_by_size(run["after_step"]["params"], position)  # the step's outputs stay there
  assert is_replicated(run["step"])


def adam_moments(opt_state: dict) -> dict:
  """{(moment, parameter path): placement} of AdamW's mu and nu."""
  out = {}
  for path, p in opt_state.items():
    for moment in (".mu", ".nu"):
      if moment in path:
        out[(moment, path.split(moment, 1)[1])] = p
  return out


@pytest.mark.parametrize("when", ["init", "after_step"])
def test_optimizer_state_follows_its_parameter(reported, when):
  run = reported["runs"]["True"]
  params = run["params"] if when == "init" else run["after_step"]["params"]
  opt_state = run["opt_state"] if when == "init" else run["after_step"]["opt_state"]
  moments = adam_moments(opt_state)
  assert sorted(moments) == sorted((m, path) for m in (".mu", ".nu") for path in params)
  for (moment, path), p in moments.items():
    assert p == params[path], (moment, path)
  others = [p for path, p in opt_state.items() if ".mu" not in path and ".nu" not in path]
  assert others and all(is_replicated(p) and size(p) == 1 for p in others)  # step counts


def test_frozen_base_is_replicated_unless_shard_frozen(reported):
  position = mesh_position(reported)
  replicated_run = reported["runs"]["False"]["frozen"]
  assert replicated_run and all(is_replicated(p) for p in replicated_run.values())
  check_split_by_size(reported["runs"]["True"]["frozen"], position)


def test_batch_is_split_over_both_axes(reported):
  position = mesh_position(reported)
  batch = reported["runs"]["False"]["batch"]
  assert sorted(batch) == ["['mel']", "['text']", "['video']"]
  for p in batch.values():
    rows = BATCH // (DATA * FSDP)
    for dev, part in p["parts"].items():
      d, f = position[dev]
      start = (d * FSDP + f) * rows
      assert part == [[start, start + rows]] + [[0, n] for n in p["shape"][1:]], dev


def test_tpu_compile_lowers_the_latents_path_without_the_vae_encoder(reported):
  frames, latents = reported["tpu_compile"]["False"], reported["tpu_compile"]["True"]
  n = DATA * FSDP
  h, w = FRAMES
  assert frames["inputs"]["video"] == [[n, 12, h, w, 3], "uint8"]
  assert "vae_mean" not in frames["inputs"]
  moments = [[n, 12, h // 2, w // 2, 4], "float16"]
  assert latents["inputs"] == {"mel": [[n, 128, 204], "float32"], "text": [[n, 77, 16], "float32"],
                               "vae_mean": moments, "vae_logvar": moments}
  assert "cached VAE latents" in latents["about"] and f"fsdp={FSDP}" in latents["about"]
  assert latents["flops"] < frames["flops"]  # the VAE encoder is not in the latents step


def test_latents_need_a_vae():
  from asva_jax.errors import ConfigError
  from asva_jax.training.program import abstract_models, batch_shapes
  config = tiny_config("")  # space_to_depth
  with pytest.raises(ConfigError, match="autoencoder=vae"):
    batch_shapes(abstract_models(config), 8, FRAMES, latents=True)
