"""report.json as markdown tables (benchmarks.report writes both)."""

from __future__ import annotations


def fmt(v) -> str:
  if v is None:
    return "–"
  if isinstance(v, bool):
    return "yes" if v else "no"
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
  return str(v)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
  if not rows:
    return ["(none)"]
  out = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
  out += ["| " + " | ".join(fmt(r.get(key)) for key, _ in columns) + " |" for r in rows]
  return out


def render(r: dict) -> list[str]:
  env = r["environment"]
  v = env["versions"]
  lines = [f"# Benchmark report: {env['device_count']} x {env['device_kind']}", ""]
  if env.get("label"):
    lines += [f"**Machine:** {env['label']}", ""]
  lines += [
      f"- backend {env['backend']}, {env['local_device_count']} local device(s), {env['process_count']} "
      f"process(es), host {env['host']} ({env['cpu_count']} CPUs)",
      f"- jax {v['jax']}, jaxlib {v['jaxlib']}, flax {v['flax']}, optax {v['optax']}; torch {v['torch']}",
      f"- XLA_FLAGS: `{env['xla_flags'] or '(none)'}`" + (f"; LIBTPU_INIT_ARGS: `{env['libtpu_init_args']}`"
                                                         if env["libtpu_init_args"] else ""),
      f"- commit {env['commit']}; {env['date_utc']} UTC; size {r['size']}{' (quick)' if r['quick'] else ''}; "
      f"wall {r['wall_s']:.0f} s of a {r['budget_s']:.0f} s budget",
      "- command: `python -m benchmarks.report` (see docs/benchmarks.md)", ""]
  if "train" in r:
    lines += [f"## Training step ({r['train']['size']}; {r['train']['peak']})", ""]
    lines += table(r["train"]["rows"], [
        ("batch", "clips"), ("remat", "remat"), ("role", "row"), ("compute", "compute"),
        ("compile_s", "compile s"), ("step_s", "step s"), ("clips_per_s", "clips/s"),
        ("gflop_per_step", "GFLOP/step"), ("tflops_per_device", "TFLOP/s/dev"), ("mfu", "MFU"),
        ("xla_peak_gib", "XLA need GiB"), ("device_gib", "device GiB"), ("fits", "fits"),
        ("peak_gib", "allocator peak GiB"), ("attention", "attention")]) + [""]
  if "sampling" in r:
    lines += [f"## Sampling, whole `pipeline.sample` incl. decode ({r['sampling']['size']})", ""]
    lines += table(r["sampling"]["rows"], [
        ("scheduler", "sampler"), ("steps", "steps"), ("dtype", "dtype"), ("batch", "batch"),
        ("audio_guidance", "audio guidance"), ("first_call_s", "first call s"), ("s_per_call", "s/call"),
        ("s_per_clip", "s/clip"), ("clips_per_s", "clips/s")]) + [""]
  if "evaluation" in r:
    rows = r["evaluation"]["rows"]
    keys = sorted({k for row in rows for k in row if k.startswith("items_per_s_")})
    lines += [f"## Evaluation networks ({r['evaluation']['sizes']} sizes)", ""]
    lines += table(rows, [("network", "network"), ("unit", "unit")] + [(k, k.replace("items_per_s_b", "items/s b="))
                                                                      for k in keys]
                   + [("scaled_from_blocks", "timed blocks (scaled to 32)")]) + [""]
    if "protocol_s" in r["evaluation"]:
      lines += [f"All metrics of the AVSync15 protocol on one device: {r['evaluation']['protocol_s'] / 60:.1f} min", ""]
  if "parallel" in r:
    p = r["parallel"]
    lines += [f"## Sampling on 1 and N devices ({p['size']}, {p['dtype']}, {p['scheduler']} {p['steps']}, "
              f"{p['per_device_batch']} clip(s) per device{', simulated CPU devices' if p['simulated'] else ''})",
              "", f"Method: {p['method']}.", ""]
    lines += table(p["rows"], [("devices", "devices"), ("clips", "clips"), ("s_per_call", "s"),
                               ("clips_per_s", "clips/s")]) + [""]
    lines += [f"Estimated AVSync15 protocol wall time: {p['protocol_note']}.", ""]
    lines += table(p["protocol"], [("devices", "devices"), ("clips", "clips"), ("generation_s", "generation s"),
                                   ("evaluation_s", "evaluation s"), ("total_s", "total s")]) + [""]
  lines += ["## Compile times (apart from the run times above)", ""]
  lines += table(r.get("compile", []), [("what", "what"), ("kind", "measured as"), ("seconds", "s")]) + [""]
  if r["skipped"]:
    lines += ["## Skipped", ""]
    lines += [f"- {s.get('section')}: " + ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("section", "reason"))
              + f" — {s['reason']}" for s in r["skipped"]] + [""]
  return lines
