#!/usr/bin/env python3
"""Compute the golden vectors of docs/wire-format.md, independently of the Rust code.

Written only from the text of docs/wire-format.md, version 3 (sections "Stream header",
"Data frame" with its subsections "Entropy-coded data frame" and "The entropy coder", and
"Golden vectors"), with the Python standard library: `zlib.crc32` for the header's
CRC-32/ISO-HDLC, a bitwise CRC-16/IBM-3740 written from its parameters, and the rANS coder
(encoder and decoder, with the escapes at both ends of every code table) written from the
spec's pseudo-code and text. Every coded payload is decoded back as a self-check, and forged
escapes (an escaped value inside its table) are checked to be refused by the decoder.

    python3 docs/wire_golden.py           # print the vectors
    python3 docs/wire_golden.py --write   # also fill the blocks in docs/wire-format.md
"""
import pathlib
import re
import struct
import sys
import zlib

MAGIC, VERSION = 0xF5, 3
RESTART = 0x01        # header flags, bit 0
ENTROPY_CODED = 0x02  # header flags, bit 1
SATURATED = 0x01      # frame_flags, bit 0
PRECISION = 12        # the frequencies of a code table sum to 1 << PRECISION
ESCAPE_F = 16         # an escaped value u = x + 128 (0 ..= 255) is coded with f_u = 16, c_u = 16 u


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


def implied_bytes(stream_id, session, frame, frame_flags) -> bytes:
    """The 8 implied bytes of a data frame's check: stream_id, session, frame, frame_flags."""
    implied = struct.pack("<BHIB", stream_id, session, frame, frame_flags)
    assert len(implied) == 8
    return implied


def data_frame(codes, stream_id, session, frame, frame_flags) -> bytes:
    """Codes (int8) then the CRC-16 (LE) of codes ‖ 8 implied bytes (not sent)."""
    body = struct.pack(f"<{len(codes)}b", *codes)
    implied = implied_bytes(stream_id, session, frame, frame_flags)
    return body + struct.pack("<H", crc16_ibm_3740(body + implied))


class Table:
    """A latent's static code table ("The entropy coder"): codes lo ..= hi with hi − lo ≥ 2,
    frequency f(c) ≥ 1 for each, summing to 4096; cum(c) is the sum of the frequencies of the
    codes below c. Its two ends, lo and hi, are escapes."""

    def __init__(self, lo, freqs):
        assert all(f >= 1 for f in freqs) and sum(freqs) == 1 << PRECISION
        self.lo, self.hi, self.freqs = lo, lo + len(freqs) - 1, list(freqs)
        assert -128 <= self.lo and self.hi <= 127, "codes are int8"
        assert self.hi - self.lo >= 2, "a table has at least 3 codes"
        self.cums = [sum(freqs[:k]) for k in range(len(freqs))]

    def f(self, code):
        assert self.lo <= code <= self.hi, f"code {code} outside {self.lo}..={self.hi}"
        return self.freqs[code - self.lo]

    def cum(self, code):
        assert self.lo <= code <= self.hi, f"code {code} outside {self.lo}..={self.hi}"
        return self.cums[code - self.lo]

    def code_at(self, q):
        """The code c with cum(c) ≤ q < cum(c) + f(c)."""
        for k, (c, f) in enumerate(zip(self.cums, self.freqs)):
            if c <= q < c + f:
                return self.lo + k
        raise AssertionError(f"no code at {q}")


def escape_symbol(x):
    """The uniform symbol u = x + 128 of an escaped code x: (f_u, c_u) = (16, 16 u)."""
    assert -128 <= x <= 127, "codes are int8"
    u = x + 128
    return ESCAPE_F, ESCAPE_F * u


def put(s, words, f, c):
    """Put one symbol of frequency f and cumulative c on the state s (the spec's pseudo-code):
    flush the low word when (s >> 20) >= f, then s = ((s / f) << 12) + c + (s mod f)."""
    if (s >> (32 - PRECISION)) >= f:
        words.append(s & 0xFFFF)
        s >>= 16
    s = ((s // f) << PRECISION) + c + (s % f)
    assert s < 1 << 32, "the state is 32 bits"
    return s


def finish(s, words) -> bytes:
    """Append the final state (nothing if 0, one word if < 2^16, else low then high word);
    the payload is the words in the order appended, each little-endian."""
    if s != 0:
        words.append(s & 0xFFFF)
        if s >= 1 << 16:
            words.append(s >> 16)
    return struct.pack(f"<{len(words)}H", *words)


def rans_encode(codes, tables) -> bytes:
    """Encoding, as in "The entropy coder": codes in reverse order j = n−1 … 0 from state 0 (x_j
    belongs to latent j mod codes_per_window). Each code x is sent as t = min(max(x, lo), hi);
    when t is lo or hi, the escaped value u = x + 128 follows it (f_u = 16, c_u = 16 u). Being a
    stack, the coder puts first the escaped value (if any), then t."""
    s, words = 0, []
    for j in reversed(range(len(codes))):
        table, x = tables[j % len(tables)], codes[j]
        t = min(max(x, table.lo), table.hi)
        if t in (table.lo, table.hi):
            s = put(s, words, *escape_symbol(x))
        s = put(s, words, table.f(t), table.cum(t))
    return finish(s, words)


def rans_decode(payload, n, tables):
    """Decoding, as in "The entropy coder": words read from the end of the payload; an empty
    payload starts at state 0, otherwise the state starts as the last word (not 0), then takes
    in one more word if any remain. Reading a symbol (f, c) from q = s & 0xFFF is
    s = (s >> 12) × f + q − c, then a word is taken in when s < 2^16 and words remain. Per
    code: t is the code with cum(t) ≤ q < cum(t) + f(t); if t is lo or hi, u = q >> 4 is read
    next (f_u = 16, c_u = 16 u) and x = u − 128 must be ≤ lo (after lo) or ≥ hi (after hi).
    Returns the n codes, or None if the payload is not valid (odd length, a zero last word, an
    escaped value inside its table, a word left unread, or the state not ending at 0)."""
    if len(payload) % 2:
        return None
    words = list(struct.unpack(f"<{len(payload) // 2}H", payload))
    s = words.pop() if words else 0
    if payload and s == 0:
        return None
    if words:
        s = (s << 16) | words.pop()

    def read(s, f, c, q):
        s = (s >> PRECISION) * f + q - c
        if s < 1 << 16 and words:
            s = (s << 16) | words.pop()
        return s

    mask = (1 << PRECISION) - 1
    codes = []
    for j in range(n):
        table = tables[j % len(tables)]
        q = s & mask
        t = table.code_at(q)
        s = read(s, table.f(t), table.cum(t), q)
        if t in (table.lo, table.hi):
            q = s & mask
            u = q >> 4
            s = read(s, ESCAPE_F, ESCAPE_F * u, q)
            x = u - 128
            if (t == table.lo and not x <= table.lo) or (t == table.hi and not x >= table.hi):
                return None  # an escaped value inside its table: not valid
        else:
            x = t
        codes.append(x)
    return codes if not words and s == 0 else None


def check_forged_escapes_are_refused(tables):
    """A payload whose escaped value lies inside its table (which no encoder makes) must be
    refused: put by hand, in the encoder's order, an end t of a table followed by an escaped
    value x with lo < x < hi, among ordinary codes, and check that the decoder returns None,
    while the same payload with an escaped value at or beyond the end decodes."""
    n = 2 * len(tables)
    for latent, table in enumerate(tables):
        for end in (table.lo, table.hi):
            for x, valid in ((table.lo + 1, False), (table.hi - 1, False),
                             (end, True), (-128 if end == table.lo else 127, True)):
                # Frame: the lowest non-end code of each latent, except code `latent` of
                # window 1, which is the end `end` escaped with value x (forged when inside).
                symbols = []
                for j in range(n):
                    tab = tables[j % len(tables)]
                    if j == len(tables) + latent:
                        symbols.append([(tab.f(end), tab.cum(end)), escape_symbol(x)])
                    else:
                        symbols.append([(tab.f(tab.lo + 1), tab.cum(tab.lo + 1))])
                s, words = 0, []
                for group in reversed(symbols):
                    for f, c in reversed(group):
                        s = put(s, words, f, c)
                payload = finish(s, words)
                decoded = rans_decode(payload, n, tables)
                if valid:
                    expected = [tables[j % len(tables)].lo + 1 for j in range(n)]
                    expected[len(tables) + latent] = x
                    assert decoded == expected, (latent, end, x, decoded)
                    assert rans_encode(expected, tables) == payload, (latent, end, x)
                else:
                    assert decoded is None, f"forged escape {end} -> {x} of latent {latent}"


def entropy_coded_frame(codes, tables, stream_id, session, frame, frame_flags) -> bytes:
    """As in "Entropy-coded data frame": len (1) ‖ payload ‖ check (2, LE). The payload is the
    rANS-coded codes when that is strictly shorter than the n codes, else the raw codes
    (len = n); the CRC-16 covers len ‖ payload ‖ 8 implied bytes."""
    n = len(codes)
    assert n <= 255
    coded = rans_encode(codes, tables)
    assert rans_decode(coded, n, tables) == list(codes), "self-check: decode(encode(x)) == x"
    payload = coded if len(coded) < n else struct.pack(f"<{n}b", *codes)
    body = bytes([len(payload)]) + payload
    implied = implied_bytes(stream_id, session, frame, frame_flags)
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


def golden_3():
    common = dict(stream_id=1, session=0x0102)
    tables = [
        Table(-2, [100, 3800, 100, 96]),                 # latent 0: codes -2 ..= 1
        Table(-1, [1, 4094, 1]),                         # latent 1: codes -1 ..= 1
        Table(-128, [3841 if c == 0 else 1 for c in range(-128, 128)]),  # latent 2
    ]
    check_forged_escapes_are_refused(tables)
    return [
        header(flags=RESTART | ENTROPY_CODED, model_id=MODEL_ID, channels=1,
               codes_per_window=3, window=64, windows_per_frame=2, header_interval=64,
               frame=0, start_sample=0, **common),
        entropy_coded_frame([-1, 0, 0, -1, 0, 5], tables, frame=0, frame_flags=0, **common),
        entropy_coded_frame([1, 0, -128, -2, 0, 127], tables, frame=1, frame_flags=0,
                            **common),
        entropy_coded_frame([-1, 0, 0, -1, 0, 0], tables, frame=2, frame_flags=SATURATED,
                            **common),
        entropy_coded_frame([-1, 0, 0, -1, 3, 0], tables, frame=3, frame_flags=0, **common),
    ]


def hex_lines(items):
    return [" ".join(f"{b:02x}" for b in item) for item in items]


def write_spec(vectors):
    """Replace the contents of the ``` block after each <!-- golden-N --> marker."""
    spec = pathlib.Path(__file__).with_name("wire-format.md")
    text = spec.read_text()
    for name, lines in vectors.items():
        # The block's lines up to its closing fence (none when the block is still empty).
        pattern = re.compile(rf"(<!-- {name} -->\n```\n)((?:(?!```)[^\n]*\n)*)(```)")
        text, n = pattern.subn(lambda m: m.group(1) + "".join(l + "\n" for l in lines)
                               + m.group(3), text)
        if n != 1:
            sys.exit(f"{spec}: expected one block after <!-- {name} -->, found {n}")
    spec.write_text(text)


def main():
    vectors = {"golden-1": hex_lines(golden_1()), "golden-2": hex_lines(golden_2()),
               "golden-3": hex_lines(golden_3())}
    for name, lines in vectors.items():
        print(name)
        print("\n".join(lines))
    if "--write" in sys.argv[1:]:
        write_spec(vectors)


if __name__ == "__main__":
    main()
