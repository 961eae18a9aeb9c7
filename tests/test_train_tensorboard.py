"""TensorBoard event files written without TensorFlow: the record framing and the protobuf fields."""

import struct

from asva_jax.training import tensorboard


def read_records(path):
  data = path.read_bytes()
  out, i = [], 0
  while i < len(data):
    (length,) = struct.unpack("<Q", data[i:i + 8])
    (length_crc,) = struct.unpack("<I", data[i + 8:i + 12])
    assert length_crc == tensorboard.masked_crc(data[i:i + 8])
    payload = data[i + 12:i + 12 + length]
    (crc,) = struct.unpack("<I", data[i + 12 + length:i + 16 + length])
    assert crc == tensorboard.masked_crc(payload)
    out.append(payload)
    i += 16 + length
  return out


def test_crc32c_check_value():
  assert tensorboard.crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_scalars_round_trip_through_the_event_encoding(tmp_path):
  writer = tensorboard.SummaryWriter(tmp_path)
  writer.scalars(7, {"loss": 0.5})
  writer.close()
  (file,) = tmp_path.iterdir()
  assert file.name.startswith("events.out.tfevents.")
  header, event = read_records(file)
  assert b"brain.Event:2" in header
  # step 7 (field 2, varint), then summary (field 5) > value (1) > tag "loss" (1), simple_value (2, float)
  assert event[0] == 0x09 and event[9:11] == bytes([0x10, 7])  # wall_time (1, double), then step
  value = bytes([0x0A, 4]) + b"loss" + bytes([0x15]) + struct.pack("<f", 0.5)
  assert event[11:] == bytes([0x2A, len(value) + 2, 0x0A, len(value)]) + value
