"""TensorBoard scalar event files written without TensorFlow.

An event file is a TFRecord stream (length, masked CRC32C of the length, data,
masked CRC32C of the data) of `Event` protocol buffers; scalars need only a few
fields, encoded here by hand: Event{wall_time=1 (double), step=2 (int64),
file_version=3 (string), summary=5 {value=1 {tag=1 (string), simple_value=2 (float)}}}.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from asva_jax.storage import AppendOnlyFile, as_path

_CRC_TABLE = []
for _i in range(256):
  _c = _i
  for _ in range(8):
    _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
  _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte = n & 0x7F
    n >>= 7
    if n:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, wire: int) -> bytes:
  return _varint((number << 3) | wire)


def _bytes_field(number: int, data: bytes) -> bytes:
  return _field(number, 2) + _varint(len(data)) + data


def event(step: int, wall_time: float, *, scalars: dict[str, float] | None = None,
          file_version: str | None = None) -> bytes:
  out = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
  if file_version is not None:
    out += _bytes_field(3, file_version.encode())
  if scalars:
    values = b"".join(_bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", v))
                      for tag, v in scalars.items())
    out += _bytes_field(5, values)
  return out


def record(data: bytes) -> bytes:
  length = struct.pack("<Q", len(data))
  return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


class SummaryWriter:
  """Appends scalar summaries to `logdir/events.out.tfevents.<time>.<host>.<pid>.<ns>` (local or gs://).

  Each writer has its own file, so a resumed run adds one and never rewrites an earlier run's.
  """

  def __init__(self, logdir: str | os.PathLike):
    now = time.time_ns()  # the nanoseconds tell apart two writers of one process and second
    name = f"events.out.tfevents.{now // 10**9}.{socket.gethostname()}.{os.getpid()}.{now % 10**9}"
    self._file = AppendOnlyFile(as_path(logdir) / name)
    self._file.write(record(event(0, time.time(), file_version="brain.Event:2")))

  def scalars(self, step: int, values: dict[str, float]) -> None:
    self._file.write(record(event(step, time.time(), scalars={k: float(v) for k, v in values.items()})))

  def close(self) -> None:
    self._file.close()
