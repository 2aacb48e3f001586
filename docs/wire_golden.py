#!/usr/bin/env python3
"""Compute the golden vectors of docs/wire-format.md, independently of the Rust code.

Written only from the text of docs/wire-format.md (sections "Stream header", "Data frame"
and "Golden vectors"), with the Python standard library: `zlib.crc32` for the header's
CRC-32/ISO-HDLC and a bitwise CRC-16/IBM-3740 written from its parameters.

    python3 docs/wire_golden.py           # print the vectors
    python3 docs/wire_golden.py --write   # also fill the blocks in docs/wire-format.md
"""
import pathlib
import re
import struct
import sys
import zlib

MAGIC, VERSION = 0xF5, 2
RESTART = 0x01     # header flags, bit 0
SATURATED = 0x01   # frame_flags, bit 0


def crc16_ibm_3740(data: bytes) -> int:
    """CRC-16/IBM-3740: poly 0x1021, init 0xFFFF, not reflected, xorout 0."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


assert crc16_ibm_3740(b"123456789") == 0x29B1, "CRC-16/IBM-3740 check value"
assert zlib.crc32(b"123456789") == 0xCBF43926, "CRC-32/ISO-HDLC check value"


def header(stream_id, flags, model_id, session, channels, codes_per_window, window,
           windows_per_frame, header_interval, frame, start_sample) -> bytes:
    """The 32-byte stream header: 28 bytes of fields, then their CRC-32 (LE)."""
    assert len(model_id) == 4
    fields = struct.pack("<BBBB4sHBBHBBIQ", MAGIC, VERSION, stream_id, flags, model_id,
                         session, channels, codes_per_window, window, windows_per_frame,
                         header_interval, frame, start_sample)
    assert len(fields) == 28
    return fields + struct.pack("<I", zlib.crc32(fields))


def data_frame(codes, stream_id, session, frame, frame_flags) -> bytes:
    """Codes (int8) then the CRC-16 (LE) of codes ‖ 8 implied bytes (not sent)."""
    body = struct.pack(f"<{len(codes)}b", *codes)
    implied = struct.pack("<BHIB", stream_id, session, frame, frame_flags)
    assert len(implied) == 8
    return body + struct.pack("<H", crc16_ibm_3740(body + implied))


MODEL_ID = bytes([0xDE, 0xAD, 0xBE, 0xEF])  # sent in this byte order


def golden_1():
    common = dict(stream_id=0, session=0x1234)
    return [
        header(flags=RESTART, model_id=MODEL_ID, channels=1, codes_per_window=5, window=256,
               windows_per_frame=1, header_interval=64, frame=0, start_sample=0, **common),
        data_frame([1, -1, 0, 127, -128], frame=0, frame_flags=0, **common),
        data_frame([2, 2, 2, 2, 2], frame=1, frame_flags=SATURATED, **common),
    ]


def golden_2():
    common = dict(stream_id=3, session=7)
    return [
        header(flags=0, model_id=MODEL_ID, channels=2, codes_per_window=4, window=128,
               windows_per_frame=2, header_interval=16, frame=304, start_sample=38400,
               **common),
        data_frame([0, 1, 2, 3, -4, -3, -2, -1], frame=304, frame_flags=0, **common),
    ]


def hex_lines(items):
    return [" ".join(f"{b:02x}" for b in item) for item in items]


def write_spec(vectors):
    """Replace the contents of the ``` block after each <!-- golden-N --> marker."""
    spec = pathlib.Path(__file__).with_name("wire-format.md")
    text = spec.read_text()
    for name, lines in vectors.items():
        pattern = re.compile(rf"(<!-- {name} -->\n```\n)(.*?)(\n```)", re.DOTALL)
        text, n = pattern.subn(lambda m: m.group(1) + "\n".join(lines) + m.group(3), text)
        if n != 1:
            sys.exit(f"{spec}: expected one block after <!-- {name} -->, found {n}")
    spec.write_text(text)


def main():
    vectors = {"golden-1": hex_lines(golden_1()), "golden-2": hex_lines(golden_2())}
    for name, lines in vectors.items():
        print(name)
        print("\n".join(lines))
    if "--write" in sys.argv[1:]:
        write_spec(vectors)


if __name__ == "__main__":
    main()
