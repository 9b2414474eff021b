#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target under fuzz/corpus/<target>/.

The seeds are real messages of every accepted format (the README's examples)
and real encodings of the records the decoders read. Run from anywhere:
    python3 fuzz/seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def mp(v):
    """A minimal MessagePack encoder (maps, strings, ints, bytes, nil)."""
    if v is None:
        return b"\xc0"
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b if len(b) < 256 else b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, dict):
        out = bytes([0x80 | len(v)])
        for k, x in v.items():
            out += mp(k) + mp(x)
        return out
    raise TypeError(v)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def field(s):
    b = s.encode()
    return bytes([len(b)]) + b


CANONICAL = {
    "interaction_id": "5d0c6f1e-2b8a-4c47-9a55-0d2f7c1b9e10",
    "user_id": "u-1",
    "interaction_type": "click",
    "target": {"id": "post-9", "type": "post"},
    "campaign_id": "c-1",
    "affiliate_id": "a-7",
    "occurred_at": "2026-11-29T10:00:00Z",
}
CANONICAL_JSON = (
    b'{"interaction_id":"5d0c6f1e-2b8a-4c47-9a55-0d2f7c1b9e10","user_id":"u-1",'
    b'"interaction_type":"click","target":{"id":"post-9","type":"post"},'
    b'"campaign_id":"c-1","affiliate_id":"a-7","occurred_at":"2026-11-29T10:00:00Z"}'
)
TRACK = (
    b'{"interaction_type":"click","target_element_id":"post-42","target_element_type":"post",'
    b'"campaign_id":"camp-7","timestamp":"2025-09-10T12:00:00Z"}'
)
CREATE = b'{"type":"create_interaction","user_id":123,"interaction":"like","timestamp":"2024-06-01T12:00:00Z"}'
SAGA = b'{"saga_id":"s-1","payload":{"post_id":"post-42","start_date":"2025-09-01","end_date":"2025-09-30"}}'

# decode_command: [b0][b1][fields...][payload] (see the target's docs).
write("decode_command", "canonical-json", b"\x00\x00" + CANONICAL_JSON)
write("decode_command", "canonical-json-ct-key", b"\x21\x00" + field("u-1") + CANONICAL_JSON)
write(
    "decode_command",
    "canonical-no-id-commandid-eventtime",
    b"\xc1\x04" + field("cmd-1") + field("1764410400000") + field("embedded:2:1042")
    + b'{"user_id":"u-2","interaction_type":"view","target":{"id":"b-1","type":"banner"},"campaign_id":"c-2"}',
)
write("decode_command", "track-interaction", b"\x28\x01" + field("user-5") + field("corr-1") + TRACK)
write("decode_command", "track-interaction-unkeyed", b"\x08\x00" + TRACK)
write("decode_command", "create-interaction", b"\x20\x00" + field("test") + CREATE)
write("decode_command", "msgpack-canonical", b"\x02\x00" + mp(CANONICAL))
write("decode_command", "msgpack-canonical-alt-ct", b"\x03\x02" + mp(dict(CANONICAL, user_id="u-3")))
write("decode_command", "saga", b"\x10\x01" + field("corr-9") + SAGA)
write("decode_command", "unsupported-xml", b"\x06\x00<interaction/>")
write("decode_command", "unknown-name", b"\x18\x00" + CANONICAL_JSON)
# Just over the 64 KiB payload limit (libFuzzer grows lengths slowly).
write("decode_command", "oversize", b"\x01\x00" + CANONICAL_JSON[:-1] + b',"pad":"' + b"x" * 65536 + b'"}')

EVENT = {
    "schema_version": 2,
    "interaction_id": "i-1",
    "user_id": "u-1",
    "seq": 7,
    "interaction_type": "like",
    "target": {"id": "post-9", "type": "post"},
    "campaign_id": "c-1",
    "occurred_at": "2026-11-29T10:00:00Z",
    "affiliate_id": "a-7",
    "correlation_id": None,
    "recorded_at": "2026-11-29T10:00:01.123456789Z",
}
EVENT_V1 = {
    "schema_version": 1,
    "interaction_id": "old",
    "user_id": "u-9",
    "seq": 1,
    "interaction_type": "click",
    "target": {"id": "post-42", "type": "post"},
    "campaign_id": "camp-7",
    "occurred_at": "2025-09-10T12:00:00Z",
}
write("event_codec", "v2", mp(EVENT))
write("event_codec", "v1", mp(EVENT_V1))

for i, (key, payload, props) in enumerate(
    [
        ("u-1", CANONICAL_JSON, {}),
        ("user-5", TRACK, {"name": "TrackInteraction", "correlationId": "corr-1"}),
        ("", mp(CANONICAL), {"content-type": "application/msgpack"}),
    ]
):
    rec = {
        "offset": 1042 + i,
        "key": key,
        "payload": payload,
        "properties": props,
        "published_at_ms": 1764410400000,
    }
    write("segment_record", f"record-{i}", mp(rec))

# store_rows: byte 0 picks the decoder (0 bucket, 1 user stats, 2 rejection).
day = struct.pack(">I", (739949 ^ 0x80000000) & 0xFFFFFFFF)  # 2026-11-29
write("store_rows", "bucket-no-campaign", b"\x00" + b"\x01" + day + b"\x02\x00")
write("store_rows", "bucket-campaign", b"\x00" + b"\x01" + day + b"\x00\x01" + struct.pack(">H", 3) + b"c-1")
write(
    "store_rows",
    "user-stats",
    b"\x01"
    + b"".join(struct.pack(">Q", n) for n in [3, 1, 1, 1, 3])
    + struct.pack(">qI", 1764410400, 0)
    + struct.pack(">qI", 1764410460, 500),
)
write(
    "store_rows",
    "rejection",
    b"\x02"
    + mp(
        {
            "command_id": "cmd-1",
            "reason": "invalid_interaction_type",
            "detail": "interaction_type must be one of click, view, like",
            "rejected_at": "2026-11-29T10:00:00Z",
        }
    ),
)
