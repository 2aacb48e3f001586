#!/usr/bin/env python3
"""Compute the golden vectors of docs/wire-format.md, independently of the Rust code.

Written only from the text of docs/wire-format.md, version 3 (sections "Stream header",
"Data frame" with its subsections "Entropy-coded data frame" and "The entropy coder", and
"Golden vectors"), with the Python standard library: `zlib.crc32` for the header's
CRC-32/ISO-HDLC, a bitwise CRC-16/IBM-3740 written from its parameters, and the rANS coder
(encoder and decoder, with the escapes at the ends of every code table, except an end that is
also an end of the int8 range, -128 or 127, which stands for itself) written from the spec's
pseudo-code and text. Every coded payload is decoded back as a self-check, forged escapes (an
escaped value inside its table) are checked to be refused by the decoder, and the ends -128 and
127 of a table are checked never to be followed by an escaped value.

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
    codes below c. Its two ends, lo and hi, are escapes, except an end that is also an end of
    the int8 range (lo = -128, hi = 127): no code lies beyond it, and it stands for itself."""

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

    def is_escape(self, t):
        """Whether the symbol t of this table is an escape (an escaped value follows it):
        t = lo with lo > -128, or t = hi with hi < 127."""
        return (t == self.lo and self.lo > -128) or (t == self.hi and self.hi < 127)

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
    when t is an escape (t = lo with lo > -128, or t = hi with hi < 127), the escaped value
    u = x + 128 follows it (f_u = 16, c_u = 16 u). Being a stack, the coder puts first the
    escaped value (if any), then t."""
    s, words = 0, []
    for j in reversed(range(len(codes))):
        table, x = tables[j % len(tables)], codes[j]
        t = min(max(x, table.lo), table.hi)
        if table.is_escape(t):
            s = put(s, words, *escape_symbol(x))
        s = put(s, words, table.f(t), table.cum(t))
    return finish(s, words)


def rans_decode(payload, n, tables):
    """Decoding, as in "The entropy coder": words read from the end of the payload; an empty
    payload starts at state 0, otherwise the state starts as the last word (not 0), then takes
    in one more word if any remain. Reading a symbol (f, c) from q = s & 0xFFF is
    s = (s >> 12) × f + q − c, then a word is taken in when s < 2^16 and words remain. Per
    code: t is the code with cum(t) ≤ q < cum(t) + f(t); if t is an escape (t = lo > −128 or
    t = hi < 127), u = q >> 4 is read next (f_u = 16, c_u = 16 u) and x = u − 128 must be ≤ lo
    (after lo) or ≥ hi (after hi); otherwise x = t.
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
        if table.is_escape(t):
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


def put_by_hand(groups) -> bytes:
    """The payload of a frame given, code after code, the list of symbols (f, c) that code is
    sent as (its table's symbol, then its escaped value if any), put in the encoder's order:
    codes in reverse, and within a code the escaped value before the table's symbol."""
    s, words = 0, []
    for group in reversed(groups):
        for f, c in reversed(group):
            s = put(s, words, f, c)
    return finish(s, words)


def check_forged_escapes_are_refused(tables):
    """A payload whose escaped value lies inside its table (which no encoder makes) must be
    refused: put by hand, in the encoder's order, an escape t of a table (an end that is not
    -128 or 127) followed by an escaped value x with lo < x < hi, among ordinary codes, and
    check that the decoder returns None, while the same payload with an escaped value at or
    beyond the end decodes."""
    n = 2 * len(tables)
    checked = 0
    for latent, table in enumerate(tables):
        # The escapes of the table: its ends, but for one that is -128 or 127.
        escapes = [end for end in (table.lo, table.hi) if end not in (-128, 127)]
        for end in escapes:
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
                payload = put_by_hand(symbols)
                decoded = rans_decode(payload, n, tables)
                if valid:
                    expected = [tables[j % len(tables)].lo + 1 for j in range(n)]
                    expected[len(tables) + latent] = x
                    assert decoded == expected, (latent, end, x, decoded)
                    assert rans_encode(expected, tables) == payload, (latent, end, x)
                else:
                    assert decoded is None, f"forged escape {end} -> {x} of latent {latent}"
                checked += 1
    assert checked > 0, "no escape to forge"


def check_int8_ends_are_not_escapes():
    """An end of a table that is also an end of the int8 range (lo = -128, hi = 127) stands for
    itself: no escaped value follows it. Each frame below is put by hand, listing for every
    code the symbols it must be sent as (an escaped value only after an end that is not -128
    or 127), and the encoder must give the same payload, which must decode back; the same
    frame put with an escaped value after every end (version 3 before the exception) must give
    another payload, never shorter, that does not decode to the frame."""
    full = Table(-128, [3841 if c == 0 else 1 for c in range(-128, 128)])  # ends -128, 127
    low = Table(-128, [1000, 3000, 96])   # codes -128 ..= -126: -128 stands, -126 escapes
    high = Table(125, [96, 3000, 1000])   # codes 125 ..= 127: 125 escapes, 127 stands
    sym = lambda table, t: (table.f(t), table.cum(t))
    cases = [
        # ([tables], codes, escaped?) per code: True where an escaped value must follow.
        ([full], [-128, 127, 127, -128, 0, -128, 127], [False] * 7),
        ([full], [-128, 127], [False, False]),
        ([low, high], [-128, 127, -128, 127, -128, 127], [False] * 6),
        ([low, high], [-126, 125, -100, -5, -128, 127], [True, True, True, True, False, False]),
        ([full, low, high], [127, -128, 127, -128, -128, 126, 0, -126, 125],
         [False, False, False, False, False, False, False, True, True]),
    ]
    for tables, codes, escaped in cases:
        n = len(codes)
        groups, groups_all_ends = [], []
        for j, x in enumerate(codes):
            table = tables[j % len(tables)]
            t = min(max(x, table.lo), table.hi)
            groups.append([sym(table, t)] + ([escape_symbol(x)] if escaped[j] else []))
            at_end = t in (table.lo, table.hi)
            groups_all_ends.append([sym(table, t)] + ([escape_symbol(x)] if at_end else []))
        payload = put_by_hand(groups)
        assert rans_encode(codes, tables) == payload, (codes, "escaped values where none due")
        assert rans_decode(payload, n, tables) == codes, (codes, "does not decode back")
        if any(e != a for e, a in zip(escaped, (len(g) == 2 for g in groups_all_ends))):
            other = put_by_hand(groups_all_ends)
            assert other != payload and len(other) >= len(payload), codes
            assert rans_decode(other, n, tables) != codes, codes


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
    check_int8_ends_are_not_escapes()
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
