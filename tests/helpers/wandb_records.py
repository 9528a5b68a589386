"""Read back what an offline Weights & Biases run wrote (``run-<id>.wandb``), without the network.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then records
in LevelDB log framing (32 KiB blocks; each fragment has a 7-byte header: CRC, length, type
1 full / 2 first / 3 middle / 4 last), each record a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

__all__ = ["read_records", "history_rows"]

_BLOCK = 32768


def read_records(path: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, parts, records = 7, [], []
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        parts.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    return records


def history_rows(path: str | Path) -> list[dict]:
    """Every ``run.log`` call as a dict (values decoded from JSON; nested keys joined with '/')."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows
