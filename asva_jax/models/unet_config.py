"""Configuration of the video UNet, read from the original `unet/config.json` fields."""

from __future__ import annotations

import dataclasses
from typing import Any

CROSS_ATTN_DOWN = ("FFSpatioAudioTempCrossAttnDownBlock3D", "FFSpatioTempCrossAttnDownBlock3D")
RES_DOWN = ("FFSpatioTempResDownBlock3D",)
CROSS_ATTN_UP = ("FFSpatioAudioTempCrossAttnUpBlock3D", "FFSpatioTempCrossAttnUpBlock3D")
RES_UP = ("FFSpatioTempResUpBlock3D",)
MID = ("FFSpatioAudioTempCrossAttnUNetMidBlock3D", "FFSpatioTempCrossAttnUNetMidBlock3D")

# Fields whose non-default values the original supports but AVSyncD never uses; refusing them
# is better than silently computing something else.
_REQUIRED = {
    "act_fn": "silu", "use_linear_projection": False, "resnet_time_scale_shift": "default",
    "class_embed_type": None, "addition_embed_type": None, "upcast_attention": False,
    "only_cross_attention": False, "dual_cross_attention": False, "center_input_sample": False,
    "time_embedding_type": "positional", "encoder_hid_dim": None, "time_cond_proj_dim": None,
    "num_class_embeds": None, "conv_in_kernel": 3, "conv_out_kernel": 3, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
    "time_embedding_dim": None, "time_embedding_act_fn": None, "timestep_post_act": None,
    "dropout": 0.0, "attention_type": "default", "encoder_hid_dim_type": None,
    "addition_time_embed_dim": None, "reverse_transformer_layers_per_block": None,
}

DEFAULT_CONFIG: dict[str, Any] = {
    "_class_name": "AudioUNet3DConditionModel",
    "in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": 768,
    "audio_cross_attention_dim": 768, "norm_num_groups": 32, "norm_eps": 1e-5,
    "flip_sin_to_cos": True, "freq_shift": 0, "sample_size": 64,
    "down_block_types": [CROSS_ATTN_DOWN[0]] * 3 + [RES_DOWN[0]],
    "mid_block_type": MID[0],
    "up_block_types": [RES_UP[0]] + [CROSS_ATTN_UP[0]] * 3,
    "addition_embed_type_num_heads": 64, "mid_block_only_cross_attention": None,
    "cross_attention_norm": None, "projection_class_embeddings_input_dim": None,
    "class_embeddings_concat": False, **_REQUIRED,
}


@dataclasses.dataclass(frozen=True)
class UNet3DConfig:
  in_channels: int = 4
  out_channels: int = 4
  block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
  layers_per_block: int = 2
  heads: tuple[int, ...] = (8, 8, 8, 8)
  cross_attention_dim: int = 768
  audio_cross_attention_dim: int = 768
  norm_num_groups: int = 32
  norm_eps: float = 1e-5
  flip_sin_to_cos: bool = True
  freq_shift: float = 0
  down_block_types: tuple[str, ...] = tuple(DEFAULT_CONFIG["down_block_types"])
  mid_block_type: str = MID[0]
  up_block_types: tuple[str, ...] = tuple(DEFAULT_CONFIG["up_block_types"])

  @property
  def uses_audio(self) -> bool:
    """Whether any block has audio cross-attention (then the UNet needs audio states)."""
    return any(has_audio(t) for t in self.down_block_types + self.up_block_types + (self.mid_block_type,))

  @property
  def time_embed_dim(self) -> int:
    return 4 * self.block_out_channels[0]

  @classmethod
  def from_dict(cls, d: dict[str, Any], source: str = "config") -> "UNet3DConfig":
    d = {**DEFAULT_CONFIG, **{k: v for k, v in d.items() if v is not None or k in _REQUIRED}}
    depth = d.get("transformer_layers_per_block", 1)
    if any(x != 1 for x in (depth if isinstance(depth, (list, tuple)) else [depth])):
      raise ValueError(f"{source}: unsupported UNet settings: transformer_layers_per_block={depth!r} "
                       "(supported: 1)")
    bad = [f"{k}={d[k]!r} (supported: {v!r})" for k, v in _REQUIRED.items() if d.get(k, v) != v]
    if bad:
      raise ValueError(f"{source}: unsupported UNet settings: " + ", ".join(bad))
    n = len(d["block_out_channels"])
    heads = d.get("num_attention_heads") or d["attention_head_dim"]
    heads = tuple(heads) if isinstance(heads, (list, tuple)) else (heads,) * n
    for name, allowed in (("down_block_types", CROSS_ATTN_DOWN + RES_DOWN),
                          ("up_block_types", CROSS_ATTN_UP + RES_UP)):
      unknown = [t for t in d[name] if t not in allowed]
      if unknown or len(d[name]) != n:
        raise ValueError(f"{source}: {name} must list {n} of {allowed}, got {d[name]}")
    if d["mid_block_type"] not in MID:
      raise ValueError(f"{source}: mid_block_type {d['mid_block_type']!r} not in {MID}")
    for c in d["block_out_channels"]:
      if c % d["norm_num_groups"]:
        raise ValueError(f"{source}: block_out_channels {d['block_out_channels']} not divisible "
                         f"by norm_num_groups {d['norm_num_groups']}")
    return cls(
        in_channels=d["in_channels"], out_channels=d["out_channels"],
        block_out_channels=tuple(d["block_out_channels"]), layers_per_block=d["layers_per_block"],
        heads=heads, cross_attention_dim=d["cross_attention_dim"],
        audio_cross_attention_dim=d["audio_cross_attention_dim"],
        norm_num_groups=d["norm_num_groups"], norm_eps=d["norm_eps"],
        flip_sin_to_cos=d["flip_sin_to_cos"], freq_shift=d["freq_shift"],
        down_block_types=tuple(d["down_block_types"]), mid_block_type=d["mid_block_type"],
        up_block_types=tuple(d["up_block_types"]))


def has_audio(block_type: str) -> bool:
  return "Audio" in block_type
