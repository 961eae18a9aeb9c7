"""First-frame inflated convolution (`FFInflatedConv3d`, docs/reference.md §2.4).

A 2-D convolution per frame, then a residual temporal linear map over the
conv outputs of [first frame, previous frame (clamped), current frame].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from asva_jax.models.linear import Conv2d, Linear


class FFInflatedConv(Conv2d):
  """Parameters: `kernel`, `bias` (the 2-D conv) and `conv_temp` (Linear 3C -> C, zero-init)."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
               padding: int = 0, dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                     dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.conv_temp = Linear(3 * out_channels, out_channels, zero_kernel=True, zero_bias=True,
                            dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (B, F, H, W, C_in) -> (B, F, H', W', C_out)."""
    b, f = x.shape[:2]
    y = super().__call__(x.reshape((b * f,) + x.shape[2:]))
    y = y.reshape((b, f) + y.shape[1:])
    c = y.shape[-1]
    w = self.conv_temp.kernel[...].astype(y.dtype)  # (3C, C): input rows [first | previous | current]
    # The first frame's term is computed once per video; previous and current share one matmul.
    first = jnp.einsum("bhwc,cd->bhwd", y[:, 0], w[:c])
    prev_cur = jnp.einsum("bfhwc,cd->bfhwd", y, jnp.concatenate([w[c:2 * c], w[2 * c:]], axis=1))
    prev, cur = prev_cur[..., :c], prev_cur[..., c:]
    prev = jnp.concatenate([prev[:, :1], prev[:, :-1]], axis=1)
    return y + first[:, None] + prev + cur + self.conv_temp.bias[...].astype(y.dtype)
