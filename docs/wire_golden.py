#!/usr/bin/env python3
"""Compute the golden vectors of docs/wire-format.md, independently of the Rust code.

Written only from the text of docs/wire-format.md, version 5 (sections "Stream header",
"Data frame" with its subsections "Entropy-coded data frame" (and its paragraph "The last
frame") and "The entropy coder", "Sending", and "Golden vectors"), with the Python standard library: `zlib.crc32` for the header's
CRC-32/ISO-HDLC, a bitwise CRC-16/IBM-3740 written from its parameters, and the rANS coder
(encoder and decoder) written from the spec's pseudo-code and text. Codes are i16; both ends
of every code table are escapes, and an escape is followed by the code's distance
d = |x − t| beyond it as uniform 8-bit symbols (f_u = 16, c_u = 16 u): u0 = min(d, 255),
then, when u0 = 255, (d − 255) >> 8 and (d − 255) & 0xFF, in that reading order.

Frames. In a session without ENTROPY_CODED a data frame is fixed: each code one int8 byte
(a code outside -128 ..= 127 is clipped to it and flags the frame SATURATED), then the check.
In an ENTROPY_CODED session a frame is len (1 or 2) ‖ payload ‖ check: len < 128 is one byte;
from 128 on two, 0x80 | (len & 0x7F) then len >> 7 (never 0: a receiver refuses the
non-minimal form 0x80 | len, 0x00). With n = windows_per_frame × codes_per_window, len ≤ 2n;
len = 2n: the payload is the raw codes as i16 (LE, two bytes each); len < 2n: rANS-coded. The
sender codes when the coded payload is shorter than 2n bytes, else sends raw i16; nothing is
clipped. The check is the CRC-16 (LE) of len ‖ payload (all the len bytes) ‖ 8 implied bytes.

The last frame (version 5). An ENTROPY_CODED session may end with an END frame: frame_flags
bit 1 (0x02) set in the implied bytes (with bit 0 if SATURATED), and the frame is
len (1 or 2) ‖ samples (u24 LE) ‖ body (len − 3 bytes) ‖ check, len ≤ 2n + 3 (n of a whole
frame, as above). 1 ≤ samples ≤ windows_per_frame × window; the frame holds the first
m = ⌈samples / window⌉ windows, and body is their n' = m × codes_per_window codes: raw i16 when
len − 3 = 2n', rANS-coded (the same coder and tables) when shorter; the sender codes when that
is shorter than 2n' bytes, as for any frame. The check covers len ‖ samples ‖ body ‖ the 8
implied bytes. A frame flagged END whose len is below 3 or whose samples is out of range is
not a frame. The spec does not say what a body longer than 2n' bytes (but within len ≤ 2n + 3)
is; read literally (neither raw nor "shorter"), this script takes it as not valid. Of the last
window a receiver outputs only samples − (m − 1) × window samples (the rest is padding).

Self-checks: the CRC check values; every coded payload (also of the frames sent raw) decodes
back to its codes; the encoder matches payloads put by hand symbol by symbol (frames 3 and 4
of vector 3: escape 1 then distance 2; escape -1 then distance 299 as 255, 0, 44); a code equal
to an escape round-trips with the distance 0; codes at the ends of the i16 range round-trip;
forged payloads are refused by the decoder (an escape followed by the distance 255, 0xFF, 0xFF,
i.e. past the i16 range, at either end of every table; a distance one past the i16 range; a
word left unread; a non-zero final state; an odd length; a zero last word). Framing: a payload
of 127 bytes gets a 1-byte length and one of 128 bytes a 2-byte length, and both frames read
back through the length reader; the non-minimal forms 0x80 0x00 (and 0x80 | k, 0x00) and a
length above 2n are refused (also with a check that holds); raw i16 frames (with 1- and 2-byte
lengths, codes at the ends of the i16 range) and a coded frame longer than 127 bytes
round-trip; a coded payload of exactly 2n bytes is sent raw, an empty one coded (len 0); a
session without ENTROPY_CODED clips to int8 and flags SATURATED. END frames: samples is a u24
LE; coded and raw END frames of 1 … windows_per_frame windows round-trip (samples, m, codes),
also the largest, 1,031 bytes (len 2n + 3, two bytes); an END frame reads back only under the
END flag, and an ordinary frame never under it; len 2n + 1 … 2n + 3 is read only as an END
frame's, and above 2n + 3 never; refused even under a check that holds: an END frame with len
below 3, or with samples 0 or above windows_per_frame × window; a raw body of other than 2n'
bytes is not valid. Every frame of the three vectors reads back (check and codes; vector 3's
END frame also its samples and m), and vector 3's frames come out coded or raw, with the
flags, as the spec's bullet list says.

    python3 docs/wire_golden.py           # print the vectors
    python3 docs/wire_golden.py --write   # also fill the blocks in docs/wire-format.md
"""
import pathlib
import re
import struct
import sys
import zlib

MAGIC, VERSION = 0xF5, 5
RESTART = 0x01        # header flags, bit 0
ENTROPY_CODED = 0x02  # header flags, bit 1
SATURATED = 0x01      # frame_flags, bit 0
END = 0x02            # frame_flags, bit 1: the last frame of an entropy-coded session
SAMPLES_SIZE = 3      # an END frame's samples field: u24, little-endian
PRECISION = 12        # the frequencies of a code table sum to 1 << PRECISION
DIST_F = 16           # a distance symbol u (0 ..= 255) is coded with f_u = 16, c_u = 16 u
I16_MIN, I16_MAX = -(1 << 15), (1 << 15) - 1
I8_MIN, I8_MAX = -128, 127


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


def int8_codes(codes):
    """The codes of a session without ENTROPY_CODED, one int8 byte each: a code outside
    -128 ..= 127 is clipped to it. Returns the bytes and whether a code was clipped (which
    flags the frame SATURATED)."""
    assert all(I16_MIN <= x <= I16_MAX for x in codes), "codes are i16"
    clipped = [min(max(x, I8_MIN), I8_MAX) for x in codes]
    return struct.pack(f"<{len(codes)}b", *clipped), clipped != list(codes)


def check_bytes(body, stream_id, session, frame, frame_flags) -> bytes:
    """The 2-byte check (LE): CRC-16 of body ‖ the 8 implied bytes (not sent)."""
    implied = implied_bytes(stream_id, session, frame, frame_flags)
    return struct.pack("<H", crc16_ibm_3740(body + implied))


def data_frame(codes, stream_id, session, frame, frame_flags) -> bytes:
    """A frame of a session without ENTROPY_CODED: the codes (int8, clipped) then the check of
    codes ‖ 8 implied bytes; a clipped code sets SATURATED in the implied frame_flags."""
    body, clipped = int8_codes(codes)
    if clipped:
        frame_flags |= SATURATED
    return body + check_bytes(body, stream_id, session, frame, frame_flags)


def read_data_frame(buf, n, stream_id, session, frame, frame_flags):
    """A receiver's reading of a fixed frame of n int8 codes under one candidate (frame number
    and flags): the codes, or None if the check does not hold."""
    if len(buf) < n + 2:
        return None
    body = buf[:n]
    if buf[n:n + 2] != check_bytes(body, stream_id, session, frame, frame_flags):
        return None
    return list(struct.unpack(f"<{n}b", body))


class Table:
    """A latent's static code table ("The entropy coder"): codes lo ..= hi (i16) with
    2 ≤ hi − lo ≤ 255,
    frequency f(c) ≥ 1 for each, summing to 4096; cum(c) is the sum of the frequencies of the
    codes below c. Its two ends, lo and hi, are always escapes."""

    def __init__(self, lo, freqs):
        assert all(f >= 1 for f in freqs) and sum(freqs) == 1 << PRECISION
        self.lo, self.hi, self.freqs = lo, lo + len(freqs) - 1, list(freqs)
        assert I16_MIN <= self.lo and self.hi <= I16_MAX, "codes are i16"
        assert 2 <= self.hi - self.lo <= 255, "2 ≤ hi − lo ≤ 255"
        self.cums = [sum(freqs[:k]) for k in range(len(freqs))]

    def f(self, code):
        assert self.lo <= code <= self.hi, f"code {code} outside {self.lo}..={self.hi}"
        return self.freqs[code - self.lo]

    def cum(self, code):
        assert self.lo <= code <= self.hi, f"code {code} outside {self.lo}..={self.hi}"
        return self.cums[code - self.lo]

    def sym(self, code):
        """The symbol (f, c) of a code of this table."""
        return self.f(code), self.cum(code)

    def is_escape(self, t):
        """Whether the symbol t of this table is an escape: t = lo or t = hi."""
        return t == self.lo or t == self.hi

    def code_at(self, q):
        """The code c with cum(c) ≤ q < cum(c) + f(c)."""
        for k, (c, f) in enumerate(zip(self.cums, self.freqs)):
            if c <= q < c + f:
                return self.lo + k
        raise AssertionError(f"no code at {q}")


def distance_symbols(d):
    """The distance d's uniform 8-bit symbols, in reading order: u0 = min(d, 255); when
    u0 = 255, then (d − 255) >> 8 and (d − 255) & 0xFF."""
    assert d >= 0
    if d < 255:
        return [d]
    assert (d - 255) >> 8 <= 255, f"distance {d} does not fit"
    return [255, (d - 255) >> 8, (d - 255) & 0xFF]


def dist_sym(u):
    """The symbol (f_u, c_u) = (16, 16 u) of a distance symbol u."""
    assert 0 <= u <= 255
    return DIST_F, DIST_F * u


def symbols_of(x, table):
    """The symbols (f, c) code x of a latent with this table is sent as, in reading order:
    t = min(max(x, lo), hi), then, when t is an escape, the distance symbols of d = |x − t|."""
    assert I16_MIN <= x <= I16_MAX, "codes are i16"
    t = min(max(x, table.lo), table.hi)
    group = [table.sym(t)]
    if table.is_escape(t):
        group += [dist_sym(u) for u in distance_symbols(abs(x - t))]
    return group


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
    when t is an escape (t = lo or t = hi), the distance d = |x − t| follows as 8-bit symbols.
    Being a stack, the coder puts first the distance symbols (if any) in the reverse of their
    reading order, then t."""
    s, words = 0, []
    for j in reversed(range(len(codes))):
        table, x = tables[j % len(tables)], codes[j]
        assert I16_MIN <= x <= I16_MAX, "codes are i16"
        t = min(max(x, table.lo), table.hi)
        if table.is_escape(t):
            for u in reversed(distance_symbols(abs(x - t))):
                s = put(s, words, *dist_sym(u))
        s = put(s, words, *table.sym(t))
    return finish(s, words)


def rans_decode(payload, n, tables):
    """Decoding, as in "The entropy coder": words read from the end of the payload; an empty
    payload starts at state 0, otherwise its length must be even and the state starts as the
    last word (not 0), then takes in one more word if any remain. Reading a symbol (f, c) from
    q = s & 0xFFF is s = (s >> 12) × f + q − c, then a word is taken in when s < 2^16 and words
    remain. Per code: t is the code with cum(t) ≤ q < cum(t) + f(t); if t is an escape (t = lo
    or t = hi), the distance is read, each symbol u = q >> 4 (f_u = 16, c_u = 16 u): d = u0, or,
    when u0 = 255, d = 255 + (u1 << 8) + u2; x = lo − d after lo, x = hi + d after hi, which
    must lie in the i16 range; otherwise x = t.
    Returns the n codes, or None if the payload is not valid (odd length, a zero last word, a
    code outside the i16 range, a word left unread, or the state not ending at 0)."""
    if len(payload) % 2:
        return None
    words = list(struct.unpack(f"<{len(payload) // 2}H", payload))
    s = words.pop() if words else 0
    if payload and s == 0:
        return None
    if words:
        s = (s << 16) | words.pop()

    mask = (1 << PRECISION) - 1

    def read_symbol(s, f, c, q):
        s = (s >> PRECISION) * f + q - c
        if s < 1 << 16 and words:
            s = (s << 16) | words.pop()
        return s

    def read_u(s):
        q = s & mask
        u = q >> 4
        return read_symbol(s, *dist_sym(u), q), u

    codes = []
    for j in range(n):
        table = tables[j % len(tables)]
        q = s & mask
        t = table.code_at(q)
        s = read_symbol(s, *table.sym(t), q)
        if table.is_escape(t):
            s, d = read_u(s)
            if d == 255:
                s, u1 = read_u(s)
                s, u2 = read_u(s)
                d = 255 + (u1 << 8) + u2
            x = table.lo - d if t == table.lo else table.hi + d
            if not I16_MIN <= x <= I16_MAX:
                return None  # a code outside the i16 range: not valid
        else:
            x = t
        codes.append(x)
    return codes if not words and s == 0 else None


def put_by_hand(groups) -> bytes:
    """The payload of a frame given, code after code, the list of symbols (f, c) that code is
    sent as in reading order (its table's symbol, then its distance symbols if any), put in the
    encoder's order: codes in reverse, and within a code its symbols in reverse."""
    s, words = 0, []
    for group in reversed(groups):
        for f, c in reversed(group):
            s = put(s, words, f, c)
    return finish(s, words)


def ordinary_groups(tables, n):
    """A frame of n codes, each the code lo + 1 of its latent's table (not an escape)."""
    return [[tables[j % len(tables)].sym(tables[j % len(tables)].lo + 1)] for j in range(n)]


def check_coder(tables):
    """The v4 self-checks of the coder, on the given tables (see the module's docstring)."""
    k = len(tables)
    n = 2 * k
    plain = [tables[j % k].lo + 1 for j in range(n)]

    # The distance symbols of the spec's examples.
    assert distance_symbols(0) == [0] and distance_symbols(2) == [2]
    assert distance_symbols(254) == [254] and distance_symbols(255) == [255, 0, 0]
    assert distance_symbols(299) == [255, 0, 44], "frame 4: distance 299 as 255, 0, 44"

    for latent, table in enumerate(tables):
        at = k + latent  # the code of this latent in window 1
        for end, sign in ((table.lo, -1), (table.hi, +1)):
            # A code equal to an escape round-trips with the distance 0.
            codes = list(plain)
            codes[at] = end
            groups = ordinary_groups(tables, n)
            groups[at] = [table.sym(end), dist_sym(0)]
            payload = put_by_hand(groups)
            assert rans_encode(codes, tables) == payload, ("escape, distance 0", latent, end)
            assert rans_decode(payload, n, tables) == codes, ("escape, distance 0", latent, end)

            # Codes beyond the escape, up to the end of the i16 range, round-trip.
            bound = I16_MIN if sign < 0 else I16_MAX
            for d in (1, 2, 254, 255, 256, 299, 510, 511, 767, abs(bound - end)):
                x = end + sign * d
                if not I16_MIN <= x <= I16_MAX:
                    continue
                codes = list(plain)
                codes[at] = x
                groups = ordinary_groups(tables, n)
                groups[at] = [table.sym(end)] + [dist_sym(u) for u in distance_symbols(d)]
                payload = put_by_hand(groups)
                assert rans_encode(codes, tables) == payload, ("beyond", latent, end, d)
                assert rans_decode(payload, n, tables) == codes, ("beyond", latent, end, d)

            # Forged: the escape then the distance 255, 0xFF, 0xFF (d = 65 790, past the i16
            # range whatever the table), and a distance one past the i16 range: refused.
            forged = [[255, 0xFF, 0xFF]]
            past = abs(bound - end) + 1
            if (past - 255) >> 8 <= 255:
                forged.append(distance_symbols(past))
            for us in forged:
                groups = ordinary_groups(tables, n)
                groups[at] = [table.sym(end)] + [dist_sym(u) for u in us]
                payload = put_by_hand(groups)
                assert rans_decode(payload, n, tables) is None, ("forged", latent, end, us)

    # A valid payload with a word left unread, a final state not 0, an odd length or a zero
    # last word is refused.
    codes = list(plain)
    codes[0] = -300 if tables[0].lo > -300 else tables[0].hi + 300
    payload = rans_encode(codes, tables)
    assert len(payload) >= 2 and rans_decode(payload, n, tables) == codes
    assert rans_decode(payload[:2] * 2 + payload[2:], n, tables) is None, "a word left unread"
    assert rans_decode(payload + b"\x01\x00", n, tables) is None, "a word left unread"
    assert rans_decode(payload + b"\x00", n, tables) is None, "odd length"
    assert rans_decode(payload[:-2] + b"\x00\x00", n, tables) is None, "zero last word"
    assert rans_decode(payload, n - 1, tables) is None, "state not ending at 0"
    assert rans_decode(b"", 0, tables) == [], "an empty payload is valid"


def length_prefix(length) -> bytes:
    """The len field of an entropy-coded frame: one byte below 128; from 128 on two bytes,
    0x80 | (len & 0x7F), then len >> 7 (never 0)."""
    assert 0 <= length <= 2 * 512 + SAMPLES_SIZE, "len ≤ 2n + 3 ≤ 1027"
    if length < 128:
        return bytes([length])
    return bytes([0x80 | (length & 0x7F), length >> 7])


def read_length(buf, n, last=False):
    """A receiver's reading of the len field of an entropy-coded frame of n codes (n of a whole
    frame, windows_per_frame × codes_per_window, also for a last frame): (len, the field's size
    in bytes), or None when it is refused (the non-minimal two-byte form, whose second byte is
    0; a length above 2n, or above 2n + 3 for a last frame, last = True) or cut off."""
    if not buf:
        return None
    if buf[0] < 0x80:
        length, size = buf[0], 1
    else:
        if len(buf) < 2:
            return None
        if buf[1] == 0:
            return None  # non-minimal: a length below 128 has only the one-byte form
        length, size = (buf[0] & 0x7F) | (buf[1] << 7), 2
    if length > 2 * n + (SAMPLES_SIZE if last else 0):
        return None
    return length, size


def i16_codes(codes) -> bytes:
    """The raw codes of an entropy-coded frame: each an i16, little-endian (never clipped)."""
    assert all(I16_MIN <= x <= I16_MAX for x in codes), "codes are i16"
    return struct.pack(f"<{len(codes)}h", *codes)


def entropy_frame_bytes(payload, stream_id, session, frame, frame_flags) -> bytes:
    """len (1 or 2) ‖ payload ‖ check; the check covers len ‖ payload ‖ 8 implied bytes."""
    body = length_prefix(len(payload)) + payload
    return body + check_bytes(body, stream_id, session, frame, frame_flags)


def read_entropy_frame(buf, n, stream_id, session, frame, frame_flags):
    """A receiver's reading of an entropy-coded frame of n codes under one candidate (frame
    number and flags): (payload, the frame's size in bytes), or None if its len is refused
    (above 2n, or 2n + 3 under the END flag), it is cut off, or the check does not hold. Under
    END the payload is samples ‖ body (read_end_frame)."""
    read = read_length(buf, n, last=bool(frame_flags & END))
    if read is None:
        return None
    length, size = read
    if len(buf) < size + length + 2:
        return None
    body = buf[:size + length]
    check = buf[size + length:size + length + 2]
    if check != check_bytes(body, stream_id, session, frame, frame_flags):
        return None
    return body[size:], size + length + 2


def decode_payload(payload, n, tables):
    """The codes of an entropy-coded frame's payload (or an END frame's body, n = m ×
    codes_per_window): 2n bytes, the raw i16 codes; fewer, rANS-coded. None if not valid. More
    than 2n bytes only an END frame's body can have (its len is bounded by the whole frame's
    2n + 3): the spec says raw "when len − 3 = 2n", coded "when shorter", nothing of longer;
    read literally, such a body is neither, so not valid."""
    if len(payload) == 2 * n:
        return list(struct.unpack(f"<{n}h", payload))
    if len(payload) > 2 * n:
        return None
    return rans_decode(payload, n, tables)


def entropy_coded_frame(codes, tables, stream_id, session, frame, frame_flags):
    """As in "Entropy-coded data frame": the sender codes the frame when the rANS-coded payload
    is shorter than the 2n bytes of the raw codes, else sends the raw codes as i16 (len = 2n).
    No code is clipped and frame_flags is sent as given.
    Returns the frame's bytes, whether it was sent coded, and the coded payload's length."""
    n = len(codes)
    assert 1 <= n <= 512
    coded = rans_encode(codes, tables)
    assert rans_decode(coded, n, tables) == list(codes), "self-check: decode(encode(x)) == x"
    sent_coded = len(coded) < 2 * n
    payload = coded if sent_coded else i16_codes(codes)
    item = entropy_frame_bytes(payload, stream_id, session, frame, frame_flags)
    # Self-check: the receiver reads it back.
    read = read_entropy_frame(item, n, stream_id, session, frame, frame_flags)
    assert read is not None and read[1] == len(item), "the frame reads back"
    assert decode_payload(read[0], n, tables) == list(codes), "its codes read back"
    return item, sent_coded, len(coded)


def u24(value) -> bytes:
    """An END frame's samples field: u24, little-endian."""
    assert 0 <= value < 1 << 24
    return value.to_bytes(SAMPLES_SIZE, "little")


def windows_of(samples, window):
    """m = ⌈samples / window⌉: the windows an END frame of this many samples holds."""
    return -(-samples // window)


def end_frame(codes, samples, tables, window, windows_per_frame, stream_id, session, frame,
              frame_flags):
    """As in "The last frame": len (1 or 2) ‖ samples (u24 LE) ‖ body ‖ check, the END bit set
    in the implied frame_flags (with SATURATED as given). 1 ≤ samples ≤ windows_per_frame ×
    window; body is the m = ⌈samples / window⌉ windows' n = m × codes_per_window codes, coded
    when the rANS-coded body is shorter than 2n bytes, else raw i16 (len − 3 = 2n); len covers
    samples ‖ body, and the check covers len ‖ samples ‖ body ‖ 8 implied bytes.
    Returns the frame's bytes, whether it was sent coded, and the coded body's length."""
    codes_per_window = len(tables)
    assert 1 <= samples <= windows_per_frame * window, "1 ≤ samples ≤ windows_per_frame × window"
    m = windows_of(samples, window)
    n = m * codes_per_window
    assert len(codes) == n and 1 <= windows_per_frame * codes_per_window <= 512
    coded = rans_encode(codes, tables)
    assert rans_decode(coded, n, tables) == list(codes), "self-check: decode(encode(x)) == x"
    sent_coded = len(coded) < 2 * n
    body = coded if sent_coded else i16_codes(codes)
    item = entropy_frame_bytes(u24(samples) + body, stream_id, session, frame,
                               frame_flags | END)
    # Self-check: the receiver reads it back, under the END flag only.
    read = read_end_frame(item, window, windows_per_frame, codes_per_window, stream_id,
                          session, frame, frame_flags | END)
    assert read == (samples, m, body, len(item)), "the END frame reads back"
    assert decode_payload(read[2], n, tables) == list(codes), "its codes read back"
    assert read_entropy_frame(item, windows_per_frame * codes_per_window, stream_id, session,
                              frame, frame_flags & ~END) is None, "not without the END flag"
    return item, sent_coded, len(coded)


def read_end_frame(buf, window, windows_per_frame, codes_per_window, stream_id, session, frame,
                   frame_flags):
    """A receiver's reading of a last frame under one candidate (frame number and flags, END
    set): (samples, m, body, the frame's size in bytes), or None if it is not a frame: its len
    is refused (above 2n + 3, n = windows_per_frame × codes_per_window) or below 3, it is cut
    off, the check does not hold, or samples is 0 or above windows_per_frame × window. The body
    is then read by decode_payload with n = m × codes_per_window."""
    assert frame_flags & END
    read = read_entropy_frame(buf, windows_per_frame * codes_per_window, stream_id, session,
                              frame, frame_flags)
    if read is None:
        return None
    payload, size = read
    if len(payload) < SAMPLES_SIZE:
        return None  # len below 3
    samples = int.from_bytes(payload[:SAMPLES_SIZE], "little")
    if not 1 <= samples <= windows_per_frame * window:
        return None  # samples out of range
    return samples, windows_of(samples, window), payload[SAMPLES_SIZE:], size


def check_framing(tables):
    """The self-checks of the two frame layouts (see the module's docstring)."""
    ids = dict(stream_id=5, session=0xBEEF, frame=77)
    k = len(tables)

    # The length field: 127 takes one byte, 128 two; both read back.
    assert length_prefix(0) == b"\x00" and length_prefix(127) == b"\x7f"
    assert length_prefix(128) == b"\x80\x01" and length_prefix(1024) == b"\x80\x08"
    for length in range(0, 1025):
        assert read_length(length_prefix(length), 512) == (length, len(length_prefix(length)))
    n = 100  # 2n = 200: 127 and 128 are both lengths of a coded payload
    for length, size in ((127, 1), (128, 2)):
        payload = bytes((7 * i + 3) & 0xFF for i in range(length))
        item = entropy_frame_bytes(payload, frame_flags=0, **ids)
        assert item[:size] == length_prefix(length) and len(item) == size + length + 2
        assert read_length(item, n) == (length, size), ("length read back", length)
        assert read_entropy_frame(item, n, frame_flags=0, **ids) == (payload, len(item))
        assert read_entropy_frame(item, n, frame_flags=SATURATED, **ids) is None

    # Refused: the non-minimal form (second byte 0), also under a check that holds; a length
    # above 2n; a cut-off length.
    assert read_length(b"\x80\x00", 255) is None, "0x80 0x00 is refused"
    for length in (0, 1, 24, 127):
        forged = bytes([0x80 | length, 0x00])
        assert read_length(forged, 255) is None, ("non-minimal", length)
        payload = bytes(length)
        body = forged + payload
        item = body + check_bytes(body, frame_flags=0, **ids)
        assert read_entropy_frame(item, 255, frame_flags=0, **ids) is None, ("non-minimal", length)
    assert read_length(b"\x18", 12) == (24, 1) and read_length(b"\x19", 12) is None
    assert read_length(b"\xc8\x01", 100) == (200, 2) and read_length(b"\xc9\x01", 100) is None
    assert read_length(b"\x80", 100) is None and read_length(b"", 100) is None
    item = entropy_frame_bytes(bytes(26), frame_flags=0, **ids)
    assert read_entropy_frame(item, 12, frame_flags=0, **ids) is None, "len above 2n"

    # Raw i16 frames round-trip: n = 12 (len 24, one byte) and n = 64 (len 128, two bytes),
    # with the ends of the i16 range; n = 512 (len 1024, the largest frame but for a last
    # frame's 3 bytes of samples, 1028 bytes).
    for n in (12, 63, 64, 512):
        codes = [(I16_MIN, I16_MAX, -300, 300, 0, -1)[j % 6] for j in range(n)]
        if n == 512:
            codes = [(I16_MAX - 97 * j) for j in range(n)]
        assert len(rans_encode(codes, tables)) >= 2 * n, "coding is not shorter"
        item, sent_coded, _ = entropy_coded_frame(codes, tables, frame_flags=0, **ids)
        assert not sent_coded and item[:len(length_prefix(2 * n))] == length_prefix(2 * n)
        assert len(item) == len(length_prefix(2 * n)) + 2 * n + 2
        assert (len(item) == 1028) == (n == 512), "512 raw codes: 1028 bytes"
        payload, size = read_entropy_frame(item, n, frame_flags=0, **ids)
        assert size == len(item) and decode_payload(payload, n, tables) == codes, ("raw i16", n)

    # A coded frame longer than 127 bytes (two-byte length) round-trips: 255 codes, each the
    # code just below the top of its table (hi − 1; rare in latent 2's table).
    codes = [tables[j % k].hi - 1 for j in range(255)]
    item, sent_coded, coded_len = entropy_coded_frame(codes, tables, frame_flags=0, **ids)
    assert sent_coded and 128 <= coded_len < 510 and item[1] != 0 and item[0] & 0x80, coded_len
    payload, size = read_entropy_frame(item, 255, frame_flags=0, **ids)
    assert size == len(item) and decode_payload(payload, 255, tables) == codes

    # The boundary: a coded payload of exactly 2n bytes is not shorter, so the frame goes raw
    # (one latent, n = 1: code -1 codes to the one word cum(-1) = 100); an empty coded payload
    # (codes all at the bottom of their tables, each followed by the distance 0) goes coded.
    one = tables[:1]
    assert rans_encode([-1], one) == b"\x64\x00"
    item, sent_coded, coded_len = entropy_coded_frame([-1], one, frame_flags=0, **ids)
    assert coded_len == 2 and not sent_coded and item[:3] == b"\x02\xff\xff", "2n: raw"
    item, sent_coded, coded_len = entropy_coded_frame([-2], one, frame_flags=0, **ids)
    assert coded_len == 0 and sent_coded and len(item) == 3, "empty payload: coded, len 0"

    check_end_framing(tables)

    # A session without ENTROPY_CODED: one int8 byte per code, clipped, flagging SATURATED.
    codes = [300, -300, 127, -128, I16_MAX, I16_MIN, 0]
    item = data_frame(codes, frame_flags=0, **ids)
    assert item[:7] == bytes([0x7F, 0x80, 0x7F, 0x80, 0x7F, 0x80, 0x00]) and len(item) == 9
    assert read_data_frame(item, 7, frame_flags=0, **ids) is None
    assert read_data_frame(item, 7, frame_flags=SATURATED, **ids) == [127, -128] * 3 + [0]
    item = data_frame([1, -1, 127, -128], frame_flags=0, **ids)
    assert read_data_frame(item, 4, frame_flags=0, **ids) == [1, -1, 127, -128]


def check_end_framing(tables):
    """The self-checks of the last frame ("The last frame"; see the module's docstring)."""
    ids = dict(stream_id=5, session=0xBEEF, frame=78)
    k = len(tables)
    window, wpf = 64, 4
    n = wpf * k  # a whole frame's codes: 12, so len ≤ 2n + 3 = 27 for a last frame
    layout = dict(window=window, windows_per_frame=wpf)

    # samples is a u24, little-endian.
    assert u24(138) == b"\x8a\x00\x00" and u24(0x030201) == b"\x01\x02\x03"
    assert u24((1 << 24) - 1) == b"\xff\xff\xff"
    assert [windows_of(x, 64) for x in (1, 63, 64, 65, 128, 138, 192, 193, 256)] == \
        [1, 1, 1, 2, 2, 3, 3, 4, 4]

    # Coded and raw END frames of 1 … wpf windows round-trip (end_frame reads each back, under
    # the END flag only); so does a SATURATED one, which reads only under END | SATURATED.
    for samples in (1, 2, 63, 64, 65, 127, 128, 129, 138, 191, 192, 193, 255, 256):
        m = windows_of(samples, window)
        plain = [tables[j % k].lo + 1 for j in range(m * k)]
        far = [(300, -300, I16_MAX, I16_MIN)[j % 4] for j in range(m * k)]
        for codes, want_coded in ((plain, True), (far, False)):
            for flags in (0, SATURATED):
                item, sent_coded, _ = end_frame(codes, samples, tables, frame_flags=flags,
                                                **layout, **ids)
                assert sent_coded == want_coded, (samples, codes)
                length = read_length(item, n, last=True)[0]
                assert item[1:4] == u24(samples), "samples right behind the one-byte len"
                assert (length == 3 + 2 * m * k) == (not sent_coded), "raw: len − 3 = 2n"
                assert read_end_frame(item, window, wpf, k, frame_flags=(flags ^ SATURATED) | END,
                                      **ids) is None, "the flags are in the check"
                assert read_entropy_frame(item, n, frame_flags=flags, **ids) is None

    # An ordinary frame never reads as an END frame.
    item, _, _ = entropy_coded_frame([tables[j % k].lo + 1 for j in range(n)], tables,
                                     frame_flags=0, **ids)
    assert read_end_frame(item, window, wpf, k, frame_flags=END, **ids) is None

    # The length bound: 2n + 1 … 2n + 3 only for a last frame; above 2n + 3 never.
    for length in (2 * n + 1, 2 * n + 2, 2 * n + 3):
        assert read_length(bytes([length]), n) is None
        assert read_length(bytes([length]), n, last=True) == (length, 1)
    assert read_length(bytes([2 * n + 4]), n, last=True) is None
    body = u24(wpf * window) + bytes(2 * n + 1)  # len 2n + 4, under a check that holds
    item = length_prefix(len(body)) + body
    item += check_bytes(item, frame_flags=END, **ids)
    assert read_end_frame(item, window, wpf, k, frame_flags=END, **ids) is None, "len > 2n + 3"

    # The largest data frame: a last frame of 512 raw codes, len 1027 (two bytes), 1031 bytes
    # (windows_per_frame 128 × 4 codes per window, window 1).
    four = tables + tables[:1]
    codes = [(I16_MAX - 97 * j) for j in range(512)]
    item, sent_coded, _ = end_frame(codes, 128, four, window=1, windows_per_frame=128,
                                    frame_flags=0, **ids)
    assert not sent_coded and item[:2] == length_prefix(1027) == b"\x83\x08"
    assert len(item) == 1031, "the largest data frame is 1031 bytes"

    # Not a frame, even under a check that holds: len below 3; samples 0 or above
    # windows_per_frame × window. The edge, samples = windows_per_frame × window, is one.
    def forged(payload, flags=END):
        item = length_prefix(len(payload)) + payload
        return item + check_bytes(item, frame_flags=flags, **ids)

    for payload in (b"", b"\x01", b"\x01\x00"):
        item = forged(payload)
        assert read_entropy_frame(item, n, frame_flags=END, **ids) == (payload, len(item))
        assert read_end_frame(item, window, wpf, k, frame_flags=END, **ids) is None, "len < 3"
    raw = i16_codes([300] * n)
    for samples in (0, wpf * window + 1, wpf * window + window, (1 << 24) - 1):
        item = forged(u24(samples) + raw)
        assert read_entropy_frame(item, n, frame_flags=END, **ids) is not None
        assert read_end_frame(item, window, wpf, k, frame_flags=END, **ids) is None, samples
    item = forged(u24(wpf * window) + raw)
    assert read_end_frame(item, window, wpf, k, frame_flags=END, **ids) == \
        (wpf * window, wpf, raw, len(item))

    # A body of more than 2n' bytes (n' = m × codes_per_window) within len ≤ 2n + 3 is neither
    # raw nor coded: the frame checks, but its body is not valid. So is an odd-length one.
    item = forged(u24(1) + i16_codes([300] * (k + 1)))
    samples, m, body, _ = read_end_frame(item, window, wpf, k, frame_flags=END, **ids)
    assert (samples, m, len(body)) == (1, 1, 2 * k + 2)
    assert decode_payload(body, m * k, tables) is None, "a body longer than 2n'"
    item = forged(u24(1) + i16_codes([300] * k))
    assert decode_payload(read_end_frame(item, window, wpf, k, frame_flags=END, **ids)[2], k,
                          tables) == [300] * k, "a body of 2n' bytes is raw"
    item = forged(u24(1) + b"\x01")
    assert decode_payload(read_end_frame(item, window, wpf, k, frame_flags=END, **ids)[2], k,
                          tables) is None, "odd length"


MODEL_ID = bytes([0xDE, 0xAD, 0xBE, 0xEF])  # sent in this byte order


def golden_1():
    common = dict(stream_id=0, session=0x1234)
    items = [
        header(flags=RESTART, model_id=MODEL_ID, channels=1, codes_per_window=5, window=256,
               windows_per_frame=1, header_interval=64, frame=0, start_sample=0, **common),
        data_frame([1, -1, 0, 127, -128], frame=0, frame_flags=0, **common),
        data_frame([2, 2, 2, 2, 2], frame=1, frame_flags=SATURATED, **common),
    ]
    assert read_data_frame(items[1], 5, frame=0, frame_flags=0, **common) == [1, -1, 0, 127, -128]
    assert read_data_frame(items[2], 5, frame=1, frame_flags=SATURATED, **common) == [2] * 5
    return items


def golden_2():
    common = dict(stream_id=3, session=7)
    items = [
        header(flags=0, model_id=MODEL_ID, channels=2, codes_per_window=4, window=128,
               windows_per_frame=2, header_interval=16, frame=304, start_sample=38400,
               **common),
        data_frame([0, 1, 2, 3, -4, -3, -2, -1], frame=304, frame_flags=0, **common),
    ]
    assert read_data_frame(items[1], 8, frame=304, frame_flags=0, **common) == \
        [0, 1, 2, 3, -4, -3, -2, -1]
    return items


def golden_3(report=None):
    common = dict(stream_id=1, session=0x0102)
    tables = [
        Table(-2, [100, 3800, 100, 96]),                 # latent 0: codes -2 ..= 1
        Table(-1, [1, 4094, 1]),                         # latent 1: codes -1 ..= 1
        Table(-128, [3841 if c == 0 else 1 for c in range(-128, 128)]),  # latent 2
    ]
    check_coder(tables)
    check_framing(tables)
    n = 4 * 3
    # (codes, frame_flags given by the encoder, the spec's bullet: coded?). Frames 3 and 4 are
    # described by their escapes and distances, i.e. as coded.
    frames = [
        ([-1, 0, 0, -1, 0, 5, -1, 0, 0, -1, 0, 0], 0, True),
        ([1, 0, -128, -2, 0, 127, 1, 0, -128, -2, 0, 127], 0, True),
        ([-1, 0, 0, -1, 0, 0, -1, 0, 0, -1, 0, 0], SATURATED, True),
        ([-1, 0, 0, -1, 3, 0, -1, 0, 0, -1, 0, 0], 0, True),
        ([-1, 0, 0, -1, -300, 0, -1, 0, 0, -1, 0, 0], 0, True),
        ([300] * 11 + [-300], 0, False),
    ]
    # Frame 6, the last (END, flagged SATURATED): 138 samples, so m = 3 windows (the third
    # holds 10 samples and 54 of padding), 9 codes, coded.
    last = ([-1, 0, 0, -1, 0, 0, 0, 0, -3], 138, SATURATED, True)
    t0, t1, t2 = tables
    # Frame 1: the codes of latents 0 and 2 are escapes, each followed by the distance 0.
    assert all(tables[j % 3].is_escape(c) for j, c in enumerate(frames[1][0]) if j % 3 != 1)

    # Frames 3 and 4 put by hand: latent 1's escape 1 then the distance 2; its escape -1 then
    # the distance 299 as 255, 0, 44.
    def by_hand(special):
        groups = [[tables[j % 3].sym(c)] for j, c in enumerate(frames[2][0])]
        groups[4] = special
        return put_by_hand(groups)

    assert rans_encode(frames[3][0], tables) == by_hand([t1.sym(1), dist_sym(2)])
    assert rans_encode(frames[4][0], tables) == by_hand(
        [t1.sym(-1), dist_sym(255), dist_sym(0), dist_sym(44)])
    # Frame 5: every code beyond its table (an escape), so coding is not shorter than 2n = 24.
    assert all(tables[j % 3].is_escape(min(max(c, tables[j % 3].lo), tables[j % 3].hi))
               and not tables[j % 3].lo <= c <= tables[j % 3].hi
               for j, c in enumerate(frames[5][0]))

    window, windows_per_frame, header_interval = 64, 4, 64
    items = [header(flags=RESTART | ENTROPY_CODED, model_id=MODEL_ID, channels=1,
                    codes_per_window=3, window=window, windows_per_frame=windows_per_frame,
                    header_interval=header_interval, frame=0, start_sample=0, **common)]
    problems = []
    for number, (codes, flags, want_coded) in enumerate(frames):
        assert len(codes) == n
        item, sent_coded, coded_len = entropy_coded_frame(
            codes, tables, frame=number, frame_flags=flags, **common)
        size = 1 if item[0] < 0x80 else 2
        length = read_length(item, n)[0]
        if report is not None:
            report.append((number, sent_coded, coded_len, length, size, len(item), flags, ""))
        if sent_coded != want_coded:
            problems.append(f"frame {number}: coded payload {coded_len} bytes (2n = {2 * n}), "
                            f"sent {'coded' if sent_coded else 'raw'}; the spec says "
                            f"{'coded' if want_coded else 'raw'}")
        # The receiver reads it under its number and flags, and under no other flags.
        payload, _ = read_entropy_frame(item, n, frame=number, frame_flags=flags, **common)
        assert decode_payload(payload, n, tables) == codes
        assert read_entropy_frame(item, n, frame=number, frame_flags=flags ^ SATURATED,
                                  **common) is None
        assert read_end_frame(item, window, windows_per_frame, 3, frame=number,
                              frame_flags=flags | END, **common) is None
        assert (length == 2 * n) == (not sent_coded)
        items.append(item)

    # Frame 6, the END frame; no header before it (6 is not a multiple of 64).
    number = len(frames)
    codes, samples, flags, want_coded = last
    assert number == 6 and number % header_interval != 0
    m = windows_of(samples, window)
    assert m == 3 and len(codes) == m * 3
    assert samples - (m - 1) * window == 10 and m * window - samples == 54, "10 + 54 padding"
    item, sent_coded, coded_len = end_frame(codes, samples, tables, window=window,
                                            windows_per_frame=windows_per_frame, frame=number,
                                            frame_flags=flags, **common)
    length, size = read_length(item, n, last=True)
    if report is not None:
        report.append((number, sent_coded, coded_len, length, size, len(item), flags | END,
                       f" samples={samples} m={m}"))
    if sent_coded != want_coded:
        problems.append(f"frame {number}: coded body {coded_len} bytes (2n = {2 * m * 3}), "
                        f"sent {'coded' if sent_coded else 'raw'}; the spec says "
                        f"{'coded' if want_coded else 'raw'}")
    # The receiver reads it back (samples, m, codes) under END | SATURATED, and under no other
    # flags: not without END (as an ordinary frame), not without SATURATED.
    read = read_end_frame(item, window, windows_per_frame, 3, frame=number,
                          frame_flags=flags | END, **common)
    assert read is not None and read[:2] == (samples, m) and read[3] == len(item)
    assert decode_payload(read[2], m * 3, tables) == codes
    assert read_end_frame(item, window, windows_per_frame, 3, frame=number, frame_flags=END,
                          **common) is None
    for other in (0, SATURATED):
        assert read_entropy_frame(item, n, frame=number, frame_flags=other, **common) is None
    assert item[size:size + 3] == u24(samples) and length == 3 + len(read[2])
    assert (length - 3 == 2 * m * 3) == (not sent_coded)
    items.append(item)

    assert not problems, "\n".join(problems)
    assert items[6] == length_prefix(24) + i16_codes([300] * 11 + [-300]) + items[6][-2:]
    return items


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
    report = []
    vectors = {"golden-1": hex_lines(golden_1()), "golden-2": hex_lines(golden_2()),
               "golden-3": hex_lines(golden_3(report))}
    for name, lines in vectors.items():
        print(name)
        print("\n".join(lines))
    print("vector 3 frames (frame: sent, coded payload bytes, len, len bytes, frame bytes, "
          "frame_flags; an END frame's samples and windows):")
    for number, sent_coded, coded_len, length, size, total, flags, extra in report:
        print(f"  frame {number}: {'coded' if sent_coded else 'raw  '} coded={coded_len:2d} "
              f"len={length:2d} ({size} byte) frame={total:2d} bytes frame_flags={flags}"
              f"{extra}")
    if "--write" in sys.argv[1:]:
        write_spec(vectors)


if __name__ == "__main__":
    main()
