"""config.remat = "auto": the trainer compiles remat none and, where XLA's memory need is over
the device's limit, the next setting of memory.AUTO_ORDER; it says which it used and why, and
records it in metrics.jsonl. The device limit is faked (CPUs have none); the needs are XLA's.

The reference is the uninterrupted remat-none baseline (tests/training_fixtures.py).
"""

from __future__ import annotations

import json
import types

import jax
import numpy as np
import pytest

from tests.training_fixtures import reference, shards  # noqa: F401 - fixtures
from tests.training_fixtures import losses, metrics, tiny_config, use_cache

from asva_jax.errors import AsvaError
from asva_jax.training import memory

GIB = 2**30


def compiled_notes(workdir) -> list[dict]:
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [line["compiled"] for line in lines if "compiled" in line]


def count_step_compiles(monkeypatch) -> dict:
  """Spies on jax.stages.Lowered.compile, which the trainer calls once per compiled setting:
  {id(compiled): whether its lowered program has rematerialised blocks (optimisation barriers;
  XLA:CPU drops them from the compiled text)}."""
  calls, compile_ = {}, jax.stages.Lowered.compile
  def spy(self, *args, **kwargs):
    compiled = compile_(self, *args, **kwargs)
    calls[id(compiled)] = "optimization_barrier" in self.as_text()
    return compiled
  monkeypatch.setattr(jax.stages.Lowered, "compile", spy)
  return calls


def test_auto_takes_the_first_policy_that_fits_then_resumes_with_none_where_no_limit(
    reference, shards, tmp_path, tmp_path_factory, monkeypatch, capsys):
  """A step without remat 'needs' 1 TiB more than XLA says (the program is told apart by its
  optimisation barriers, which only rematerialised blocks have), the device 'holds' what XLA says
  plus 1 GiB: auto must switch to dots_saveable for real, and the losses stay those of remat none.
  The rerun on a device with no limit (this CPU) chooses again: none, one compilation."""
  from asva_jax.training import trainer
  use_cache(tmp_path_factory)
  calls = count_step_compiles(monkeypatch)
  real_peak = memory.peak_bytes
  def peak(compiled):
    return real_peak(compiled) + (0 if calls[id(compiled)] else 2**40)
  monkeypatch.setattr(memory, "peak_bytes", peak)
  monkeypatch.setattr(trainer, "shared_limit", lambda: 64 * GIB)
  workdir = tmp_path / "auto"
  first = trainer.train(tiny_config(shards, remat="auto", **{"train.num_steps": 2}), workdir)
  out = capsys.readouterr().out
  assert sorted(calls.values()) == [False, True], out
  assert "(2 compilations); attention xla, remat dots_saveable (auto: none needs 1024." in out, out
  assert "GiB; the limit is 60.80 GiB (95 % of the device's 64.00 GiB))\n" in out, out
  [note] = compiled_notes(workdir)
  assert note["step"] == 0 and note["remat"] == "dots_saveable" and note["remat_config"] == "auto"
  assert note["attention"] == "xla" and note["limit_bytes"] == 64 * GIB
  assert [t["remat"] for t in note["tried"]] == ["none"] and note["tried"][0]["need_bytes"] > 2**40
  assert 0 < note["need_bytes"] < GIB

  monkeypatch.undo()  # the real limit (none on CPU) and the real needs
  calls = count_step_compiles(monkeypatch)
  trainer.train(tiny_config(shards, remat="auto", **{"train.num_steps": 3}), workdir)
  out = capsys.readouterr().out
  assert len(calls) == 1, out
  assert "remat none (auto: no memory limit on cpu devices, so none, compiled once)" in out, out
  notes = compiled_notes(workdir)
  assert [(n["step"], n["remat"], n["limit_bytes"]) for n in notes] == [(0, "dots_saveable", 64 * GIB),
                                                                        (2, "none", None)]
  assert 0 < notes[1]["need_bytes"] < GIB and notes[1]["tried"] == []
  assert [r["step"] for r in first] == [1, 2]
  np.testing.assert_allclose(losses(metrics(workdir)), losses(metrics(reference)[:3]), rtol=1e-6, atol=0)


def test_a_rerun_may_switch_to_auto():
  """remat is a field a rerun may change (resume_check.MAY_CHANGE), "auto" included; the resumed run
  chooses again (the test above)."""
  from asva_jax.training.resume_check import config_changes
  recorded = json.loads(tiny_config("", remat="full").to_json())
  refused, allowed = config_changes(recorded, tiny_config("", remat="auto"))
  assert refused == [] and len(allowed) == 1 and "remat" in allowed[0] and "auto" in allowed[0], allowed


def fake_compile(needs: dict, refused=()):
  """compile_with for choose_remat: programs with the given needs; `refused` settings fail the way
  a TPU compile fails when the program does not fit."""
  compiled = []
  def compile_with(name):
    compiled.append(name)
    if name in refused:
      raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Ran out of memory in memory space hbm")
    analysis = types.SimpleNamespace(argument_size_in_bytes=needs[name], temp_size_in_bytes=0,
                                     output_size_in_bytes=0, alias_size_in_bytes=0)
    return types.SimpleNamespace(name=name, memory_analysis=lambda: analysis)
  return compile_with, compiled


def test_choose_remat_order_margin_and_refusals():
  needs = {"none": 100 * GIB, "dots_saveable": 96 * GIB, "dots_with_no_batch_dims_saveable": 95 * GIB,
           "full": 10 * GIB}
  compile_with, compiled = fake_compile(needs, refused=("dots_saveable",))
  program, choice = memory.choose_remat(compile_with, 100 * GIB)  # 95 GiB usable
  assert program.name == "dots_with_no_batch_dims_saveable" and choice.need == 95 * GIB
  assert compiled == ["none", "dots_saveable", "dots_with_no_batch_dims_saveable"]
  assert choice.tried == [("none", 100 * GIB), ("dots_saveable", None)]
  assert "dots_saveable needs more (XLA: out of memory)" in choice.reason()

  compile_with, compiled = fake_compile(needs)
  program, choice = memory.choose_remat(compile_with, None)
  assert program.name == "none" and compiled == ["none"] and choice.limit is None
  assert choice.need == 100 * GIB


def test_choose_remat_says_what_to_change_when_nothing_fits():
  compile_with, compiled = fake_compile({"none": 40 * GIB, "dots_saveable": 30 * GIB,
                                         "dots_with_no_batch_dims_saveable": 25 * GIB, "full": 21 * GIB})
  with pytest.raises(AsvaError) as error:
    memory.choose_remat(compile_with, 20 * GIB)
  message = str(error.value)
  assert compiled == list(memory.AUTO_ORDER)
  assert "\n" not in message
  for part in ("--config.remat=auto", "remat full's, is 21.00 GiB", "limit of 19.00 GiB",
               "(95 % of the device's 20.00 GiB)", "--config.train.batch_size", "--config.mesh.fsdp"):
    assert part in message, message
