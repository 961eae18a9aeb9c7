"""One optimizer step (`training.step`) against references outside it: the gradient of `grad_accum = 2` is
the mean of two explicit micro-batch gradients (same keys), and the clip, AdamW update and weight decay
are PyTorch's (`clip_grad_norm_` + `torch.optim.AdamW`, the original's optimizer, docs/reference.md §6.5)
applied to those gradients, two steps in a row."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from asva_jax.schedulers.noise_schedule import scaled_linear_alphas_cumprod
from asva_jax.training.build import build_models
from asva_jax.training.objective import diffusion_loss
from asva_jax.training.state import make_optimizer, split_model
from asva_jax.training.step import make_train_step
from tests.training_fixtures import tiny_config

B, ACCUM, STEPS = 4, 2, 2
LR, WEIGHT_DECAY = 1e-2, 0.5
FAST = {"xla_backend_optimization_level": 0}


def batch(seed: int, text_dim: int) -> dict:
  rng = np.random.default_rng(seed)
  return {"video": rng.integers(0, 256, (B, 12, 16, 16, 3), dtype=np.uint8),
          "mel": rng.normal(size=(B, 128, 204)).astype(np.float32),
          "text": rng.normal(size=(B, 3, text_dim)).astype(np.float32)}


@pytest.fixture(scope="module")
def setup():
  config = tiny_config("", **{"train.batch_size": B, "train.grad_accum": ACCUM, "train.learning_rate": LR,
                              "train.weight_decay": WEIGHT_DECAY, "diffusion.scaling_factor": 0.5})
  model = build_models(config).model
  graphdef, params, frozen = split_model(model, config)
  mask = jnp.asarray(model.audio_encoder.segment_masks())
  d = config.diffusion
  alphas = jnp.asarray(scaled_linear_alphas_cumprod(d.num_train_timesteps, d.beta_start, d.beta_end))
  batches = [batch(s, model.unet.config.cross_attention_dim) for s in range(STEPS)]

  def loss(p, micro, key):  # the objective, called as the recipe says, on one micro-batch
    m = nnx.merge(graphdef, p, frozen)
    return diffusion_loss(m.unet, m.autoencoder, m.audio_encoder, micro["video"], micro["mel"], micro["text"],
                          mask, alphas, key, scaling_factor=0.5, audio_drop_prob=d.audio_drop_prob,
                          prediction_type=d.prediction_type)
  grad = jax.jit(jax.value_and_grad(loss)).lower(params, {k: v[:B // ACCUM] for k, v in batches[0].items()},
                                                 jax.random.key(0)).compile(FAST)
  return config, graphdef, params, frozen, alphas, mask, batches, grad


def explicit_gradient(grad, params, full_batch, seed: int, step: int):
  """Mean loss and gradient over micro-batches i = rows i, i + ACCUM, ... with key fold_in(step key, i)."""
  step_key = jax.random.fold_in(jax.random.key(seed), step)
  results = [grad(params, {k: v[i::ACCUM] for k, v in full_batch.items()}, jax.random.fold_in(step_key, i))
             for i in range(ACCUM)]
  loss = np.mean([float(r[0]) for r in results])
  return loss, jax.tree.map(lambda *g: sum(g) / ACCUM, *[r[1] for r in results])


def torch_steps(leaves, treedef, grad, batches, seed, clip_norm, weight_decay, clip=True):
  """PyTorch's optimizer on the explicit gradients at its own parameters: (params, losses, norms) per step."""
  tparams = [torch.nn.Parameter(torch.tensor(np.array(x))) for x in leaves]
  opt = torch.optim.AdamW(tparams, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
  out = []
  for step, full_batch in enumerate(batches):
    params = jax.tree.unflatten(treedef, [jnp.asarray(p.detach().numpy()) for p in tparams])
    loss, grads = explicit_gradient(grad, params, full_batch, seed, step)
    for p, g in zip(tparams, jax.tree.leaves(grads)):
      p.grad = torch.tensor(np.array(g))
    norm = torch.nn.utils.clip_grad_norm_(tparams, clip_norm if clip else float("inf"))
    opt.step()
    out.append(([p.detach().numpy().copy() for p in tparams], loss, float(norm)))
  return out


def test_accumulated_step_equals_explicit_micro_batches_and_torch_adamw(setup):
  config, graphdef, params, frozen, alphas, mask, batches, grad = setup
  leaves, treedef = jax.tree.flatten(params)
  # A clip that binds: the clipped gradient's elements near AdamW's eps, where the update depends on
  # their scale (above it, Adam's first step would not see a rescaling).
  n = sum(x.size for x in leaves)
  config.train.clip_norm = 2e-8 * np.sqrt(n)
  _, first_grads = explicit_gradient(grad, params, batches[0], config.seed, 0)
  assert float(global_norm(first_grads)) > 100 * config.train.clip_norm

  optimizer = make_optimizer(config.train)
  train_step = make_train_step(graphdef, optimizer, config, alphas, mask)
  state = {"step": jnp.asarray(0, jnp.int32), "params": params, "opt_state": optimizer.init(params)}
  step_fn = jax.jit(train_step).lower(state, frozen, batches[0]).compile(FAST)
  ours = []
  for full_batch in batches:
    state, metrics = step_fn(state, frozen, full_batch)
    ours.append(([np.asarray(x) for x in jax.tree.leaves(state["params"])], float(metrics["loss"]),
                 float(metrics["grad_norm"])))
  assert int(state["step"]) == STEPS

  reference = torch_steps(leaves, treedef, grad, batches, config.seed, config.train.clip_norm, WEIGHT_DECAY)
  for (p, loss, norm), (p_ref, loss_ref, norm_ref) in zip(ours, reference):
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert norm == pytest.approx(norm_ref, rel=1e-4)  # before clipping, as logged
    assert max_diff(p, p_ref) < 1e-6, max_diff(p, p_ref)
  # Each part of the update shows: without the clip or the weight decay, torch lands elsewhere.
  unclipped = torch_steps(leaves, treedef, grad, batches, config.seed, config.train.clip_norm, WEIGHT_DECAY,
                          clip=False)
  undecayed = torch_steps(leaves, treedef, grad, batches, config.seed, config.train.clip_norm, 0.0)
  assert max_diff(ours[-1][0], unclipped[-1][0]) > 1e-4
  assert max_diff(ours[-1][0], undecayed[-1][0]) > 1e-4


def global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def max_diff(a, b) -> float:
  return max(float(np.abs(np.asarray(x, np.float64) - y).max()) for x, y in zip(a, b))


# The audio cross-attention over each frame's own tokens (config.model.audio_keys "gathered") against the
# full masked attention over all 229 ("masked"), on the same step: with the audio encoder training and
# classifier-free audio dropout on (both kept and dropped clips in the batch), the loss, every gradient
# and one AdamW update agree; and on CPU the trainer's own step (build_program) uses the gathered form.
# Adam's eps is 1 here: a first Adam step is about sign(g) where |g| >> eps, which would turn float noise in
# near-zero gradients into whole updates; with eps = 1 (and the clip at 1) the update follows g itself.
GATHER = {"train.batch_size": B, "train.grad_accum": 1, "model.train_audio_encoder": True,
          "diffusion.audio_drop_prob": 0.5, "train.eps": 1.0}


def relative_error(a, b) -> float:
  """max |a - b| over max |b|, leaf by leaf, the worst leaf."""
  return max(float(jnp.abs(x - y).max() / jnp.abs(y).max()) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b)) if float(jnp.abs(y).max()) > 0)


def audio_encoder_leaves(tree) -> list:
  return [x for path, x in jax.tree_util.tree_flatten_with_path(tree)[0] if path[0].key == "audio_encoder"]


def test_gathered_audio_keys_give_the_masked_loss_gradients_and_update():
  """One step per form from the same state. Adam's first moment after one step is (1 - b1) times the
  clipped gradient, so the step's own state shows its gradients (the clip factor is common up to the
  norms' 1e-7)."""
  from asva_jax.training.objective import draw_keys
  from asva_jax.training.step import step_key
  configs = {form: tiny_config("", **GATHER, **{"model.audio_keys": form}) for form in ("gathered", "masked")}
  config = configs["masked"]
  model = build_models(config).model
  graphdef, params, frozen = split_model(model, config)
  assert audio_encoder_leaves(params)
  mask = jnp.asarray(model.audio_encoder.segment_masks())
  d = config.diffusion
  alphas = jnp.asarray(scaled_linear_alphas_cumprod(d.num_train_timesteps, d.beta_start, d.beta_end))
  data = batch(0, model.unet.config.cross_attention_dim)
  key = step_key(config.seed, 0)  # the step's key at step 0 (grad_accum 1)
  keep = np.asarray(jax.random.bernoulli(draw_keys(key).audio_drop, 1 - d.audio_drop_prob, (B,)))
  assert 0 < keep.sum() < B, keep  # the batch holds clips with their audio and clips with the null audio

  results = {}
  for form, c in configs.items():
    optimizer = make_optimizer(c.train)
    state = {"step": jnp.asarray(0, jnp.int32), "params": params, "opt_state": optimizer.init(params)}
    step = jax.jit(make_train_step(graphdef, optimizer, c, alphas, mask))
    results[form] = step.lower(state, frozen, data).compile(FAST)(state, frozen, data)
  (state_g, metrics_g), (state_m, metrics_m) = results["gathered"], results["masked"]
  assert float(metrics_g["loss"]) == pytest.approx(float(metrics_m["loss"]), rel=1e-5)
  assert float(metrics_g["grad_norm"]) == pytest.approx(float(metrics_m["grad_norm"]), rel=1e-5)
  [adam_g], [adam_m] = ([s for s in o["opt_state"][1] if hasattr(s, "mu")] for o in (state_g, state_m))
  assert relative_error(adam_g.mu, adam_m.mu) < 1e-5  # the gradients, leaf by leaf
  assert relative_error(adam_g.nu, adam_m.nu) < 1e-5
  # the gather passes the audio tokens' gradients on to the encoder
  assert any(float(jnp.abs(g).max()) > 0 for g in audio_encoder_leaves(adam_g.mu))
  # The updated params agree to 1e-5 of the leaf's largest update, beyond the rounding of the params.
  for p0, p_g, p_m in zip(*(jax.tree.leaves(t) for t in (params, state_g["params"], state_m["params"]))):
    ulp = np.finfo(np.float32).eps * float(jnp.abs(p0).max())
    assert float(jnp.abs(p_g - p_m).max()) <= 1e-5 * float(jnp.abs(p_m - p0).max()) + 2 * ulp


@pytest.mark.parametrize("form, used", [("auto", True), ("masked", False)])
def test_the_trainers_step_gathers_audio_keys_on_cpu(monkeypatch, form, used):
  """build_program's step (the trainer's) on this CPU: "auto" traces the gathered attention, "masked" not."""
  from asva_jax.models import unet_3d
  from asva_jax.parallel import sharding
  from asva_jax.training.program import batch_shapes, build_program
  calls = []
  gather = unet_3d.gather_audio_keys
  monkeypatch.setattr(unet_3d, "gather_audio_keys", lambda audio, mask, keys: calls.append(keys) or gather(
      audio, mask, keys))
  config = tiny_config("", **{"train.batch_size": 2, "model.audio_keys": form})
  model = build_models(config).model
  program, state, frozen = build_program(model, config, sharding.make_mesh(config.mesh))
  program.step.lower(state, frozen, batch_shapes(model, 2, (16, 16), latents=False))
  assert program.audio_keys == (25 if used else None)
  assert calls == ([25] * len(calls) if used else []) and (len(calls) > 0) == used


def test_audio_keys_option_per_backend():
  from asva_jax.audio.segments import segment_masks
  from asva_jax.errors import ConfigError
  from asva_jax.training.build import audio_keys_option
  masks = segment_masks(12)
  assert [audio_keys_option(form, masks, backend) for form in ("auto", "gathered", "masked")
          for backend in ("cpu", "gpu")] == [25, None, 25, 25, None, None]
  with pytest.raises(ConfigError, match="--config.model.audio_keys='sparse'"):
    audio_keys_option("sparse", masks)
