#!/usr/bin/env python3
"""Compute the golden vectors of docs/wire-format.md, independently of the Rust code.

Written only from the text of docs/wire-format.md, version 11 (sections "Stream header",
"Data frame" with its subsections "Entropy-coded data frame" (and its paragraph "The last
frame"), "The entropy coder" (with its paragraphs "What is coded", "Window classes" (new in
version 10) and "Escapes") and "Bounded sessions" (with its paragraphs "The residual coder",
"Rebuilding" (the adaptive stage, new in version 8), "Adapting or not" (its bit α per
segment), "Symbols" and "Blocks"), "Sending", and "Golden vectors"), with the Python
standard library. For vectors 1 to 5, versions 9 and 10 changed only the header's version byte
(and so its CRC): version 9's latent codes in bounded sessions ("With latent codes", with its
paragraph "The integer decoder", implemented here as IntegerDecoder) have vector 7; version
10's window classes are a model's choice (its blob's classes), which vectors 3 and 4 do not
make (no class symbol is sent: their payloads are unchanged), and have vector 6. Version 11
changed only the stream header (its length in the flags byte, the frame number and the start
sample as varints: `varint` here), so every vector's headers and nothing else. The script
uses `zlib.crc32` for the header's CRC-32/ISO-HDLC, a bitwise CRC-16/IBM-3740
written from its parameters, and the rANS coder (encoder and decoder) written from the spec's
pseudo-code and text. Codes are i16; both
ends of every code table are escapes, and an escape is followed by the value's distance
d = |v − t| beyond it as uniform 8-bit symbols (f_u = 16, c_u = 16 u): u0 = min(d, 255),
then, when u0 = 255, (d − 255) >> 8 and (d − 255) & 0xFF, in that reading order.

Predicted latents (version 6). A model's tables (TableSet) are one table per latent, in latent
order, then one difference table per predicted latent, in latent order. The blob's lags say
which latents are predicted: empty (none), or one byte per latent, its lag L_i (0: not
predicted, and no difference table; L_i ≥ 1: predicted from the window L_i before, 1 being the
window just before). A plain list of tables is a table set with empty lags. With
k = codes_per_window and x_0 … x_{n−1} a frame's codes (x_j of latent i = j mod k), the coder
codes the value v_j with the table T_j: when latent i is predicted, with lag L = L_i ≥ 1, and
j ≥ L × k (any window of the frame but its first L), v_j = x_j − x_{j−L×k} (the same latent, L
windows before) wrapped to i16 (± 65 536) with the latent's difference table; otherwise
v_j = x_j with the latent's own table. So the first L windows of every frame (also of a last
frame, which may hold L windows or fewer: then none of that latent's codes is predicted) use
the latent's own table, and prediction never reaches before the frame's first window (nor into
the frame before). The decoder reads v_j with T_j and recovers x_j = v_j + x_{j−L×k}, wrapped
to i16, for a predicted code. Escapes and distances apply to the values v_j. A frame sent raw
carries the codes x_j themselves. The stream header does not say which latents are predicted
nor their lags: that is the model's (its blob's).

Window classes (version 10). A table set may come in K = 2 to 4 window classes (TableSet's
classes: the frequencies cf(0 … K−1) of the class table, ClassTable, each ≥ 1 and summing to
4096, ccum(c) the sum below c; the blob's cumulative frequencies ccum(0) = 0 < … < ccum(K−1) <
4096); its tables are then every table once per class, class after class, class c's list like a
table set's above (latent tables, then difference tables), and table t has the same lo and hi
in every class. Each window w of a frame (codes x_{wk} … x_{wk+k−1}) has a class c_w: in
reading order the symbol c_w (f = cf(c_w), c = ccum(c_w)) comes before the window's values,
which are coded with class c_w's tables (T_j of class c_w: its latent table, or its difference
table for a predicted code, whatever the class of the window it is predicted from); the
encoder, putting the values in reverse, puts the class symbol after v_{wk}'s symbols. The
decoder reads, at each j with j mod k = 0, the class c with ccum(c) ≤ q < ccum(c) + cf(c)
(q = s & 0xFFF), then the window's values with its tables. Without classes nothing is sent for
a window (version 9's payloads). Which class a window takes is the sender's (a receiver reads
any); Funnel's encoder takes (cheapest_class) the class with the smallest window_cost: the sum
of class_cost(f) over the class symbol's cf(c) and the window's value symbols t_j in class c's
tables (an escaped value's symbol is its clamped end; distances are left out), the lowest class
on a tie, with class_cost(f) = 192 − (16 × ⌊log2 f⌋ + F[m]) floored at 0, m the four bits
below the leading 1 of f (zeros shifted in when f < 16: f << (4 − ⌊log2 f⌋)) and F = [1, 2, 3,
5, 6, 7, 8, 9, 10, 11, 12, 13, 13, 14, 15, 16]. rans_encode takes the classes to force (any
assignment) for the self-checks; rans_read returns the classes read with the codes. Read
literally, with two points the paragraph leaves implicit: (i) "after a shift left when
f < 16" is read as the shift that leaves four bits below the leading 1 (f << (4 − ⌊log2 f⌋));
for f = 1 … 15 other readings (a shift by 4) give the same m, since the bits shifted in are 0.
(ii) The decoding paragraph ("For j = 0 … n−1: …") does not mention the class symbol; the
"Window classes" paragraph places it before each window's values in reading order, as a symbol
(f = cf(c), c = ccum(c)), so it is read as any symbol: the c with ccum(c) ≤ q < ccum(c + 1).
The floor at 0 of class_cost never acts on a valid table (its largest frequency is 4094, a
class's 4095; only 4096 would go below 0).

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

Bounded sessions (version 7; the adaptive stage, version 8). A header flagged BOUNDED (bit 2,
0x04; with ENTROPY_CODED) has codes_per_window 0 and windows_per_frame × window × channels ≤
1024. Its frames carry samples (i16): m per channel (windows_per_frame × window, or a last frame's `samples`, no padding), C
channels, N = m × C; the payload (a last frame's body, behind len ‖ samples (u24)) is the raw
samples, 2N bytes, i16 LE channel after channel, or, when shorter, residual coded; len ≤ 2N
(+ 3 for a last frame). The residual coder (ResidualCoder): E′, a_1 … a_p (p ≤ 4, Q12), the
adaptive stage's order n (0 … 16; 0: none) and step μ (0 … 15), class bounds b_0 < … < b_{K−2},
K + 1 tables (0: classes; 1 + c: bin symbols of class c). Each channel is a segment, rebuilt
(Segment) from an empty state, h_1 … h_4 = 0 and the adaptive stage's weights w_1 … w_n = 0
(Q14) and history g_1 … g_n = 0, in a closed loop (the sender predicts from the samples a
receiver rebuilds, so its state is the receiver's): P = Σ a_i h_i exact, f = (P + 2048) >> 12
(not clamped) with Python's arithmetic >> (floor), A = Σ w_j g_j, g = (A + 8192) >> 14,
p = clamp(f + g); x = wrap16(p + q) for E′ = 0, else clamp(p + q(2E′ + 1)); then, if n ≥ 1,
S = 1 + Σ g_j², k = ⌊log2 S⌋, z = 14 − k − μ, u = clamp(x − f − g), every
w_j = clamp(w_j + ((u·g_j) << z), ±262 144) (<< z with z < 0: >> −z, floor) with the g_j the
prediction used, then g_n … g_2 = g_{n−1} … g_1 and g_1 = clamp(x − f) (u and g_1 with the
unclamped f and g); then h moves on (h_1 = x). With n = 0, p = clamp(f), version 7's
prediction. Adapting or not: when n ≥ 1 each segment has a bit α (choose_alpha, adapts):
α = 1 runs the stage in that segment, α = 0 rebuilds it as if n = 0; Funnel's sender codes the
segment both ways, each from the empty state, and sets α = 1 only when the stage's Σ|q| over
the segment's bins is strictly smaller (a tie, or a larger sum, is α = 0), carrying the bins
and rebuilt samples of the way chosen. The sender's
q = wrap16(s − p) for E′ = 0, else sign(d)⌊(|d| + E′)/(2E′ + 1)⌋, its state taking in the
rebuilt x, not its sample s. A bin |q| < 16 is its own
symbol; else o = ⌊log2 |q|⌋, symbol ±(12 + o), then o raw bits r = |q| − 2^o as symbols
(f = 2^(12−k), c = v·2^(12−k), k ≤ 8 bits): one of o bits when o ≤ 8, else r >> 8 (o − 8 bits)
then r & 0xFF. Segments are cut into blocks of 32 (the last shorter); level ⌊16 Σ|q| / n⌋, class
the number of bounds below it. Reading order: per segment, its α when n ≥ 1 (a raw-bit symbol
of k = 1: f = 2048, c = 2048 α), then per block, the class (table 0), then per bin its symbol
(table 1 + c) and its raw bits; all put with the rANS coder above in reverse
reading order (put_by_hand), read first to last by WordReader. Valid only if the coder's rules
hold and every class is in 0 … K − 1, every |symbol| ≤ 27 and every bin in the i16 range (α,
one raw bit, is 0 or 1 whatever the payload). The sender codes when the coded payload is
shorter than 2N, else sends raw the samples a receiver of the coded form (with the α chosen)
rebuilds. SATURATED: one of the sender's samples is −32768 or 32767.
Ambiguities, resolved literally: (1) an escaped bin symbol's distance and its raw bits: the
symbol is a value "coded exactly as in The entropy coder" (t, then its distance), "followed by
its raw bits", so t, distance, raw bits. (2) "every class is below K" does not exclude a
negative class (table 0's escape lo lets a payload code one), whose table 1 + c would be table
0 or none: refused (a class is 0 … K − 1). (3) SATURATED's "samples": the samples the sender
read, as the parenthesis on the converter's input says (in vector 5 the rebuilt samples give
the same flags). (4) Vector 5's frame 2 lists the sender's samples (the bullets give each
frame's samples), not the rebuilt ones it carries. (5) The largest data frame is 1,031 bytes
in a session of latent codes only: a bounded session's raw last frame of N = 1024 is 2,055
bytes (len 2051; the spec now says so), so length_prefix allows 2051. (6) A last frame's
len ≤ 2N′ + 3 needs N′ from `samples`, which follows len: len is bounded by the whole frame's
2N + 3, then a body longer than 2N′ is not valid (the END-frame rule). (7) Nothing asks a decoder to check a block's class against its
level: it does not. The adaptive stage (version 8): the spec now says outright what earlier
drafts left to a literal reading: (8) ((u·g_j) << z, the product shifted), (9) (u and g_1 take
the unclamped f and g, not p: they differ from x − p when f + g lies outside the i16 range)
and (10) (the sender's state takes in the rebuilt x, not its sample s: the two differ when
E′ ≥ 1); the script checks each by hand. (11) Names used twice: k (⌊log2 S⌋ in the
pseudo-code) is also a raw-bit count (α is "a raw-bit symbol of k = 1" in the very next
paragraph), n (the order) also a block's bin count, f (the fixed prediction) also a
frequency, s the sender's sample and the coder's state: each read in its own paragraph (the
shift, formerly s too, is now z). (12) μ is a shift: a larger μ is a smaller step (2^−μ).
(13) "every value is an exact integer; |A| ≤ 2^37, so intermediate results fit 48 bits":
checked (the largest magnitude met is below 2^47; |A| ≤ 16 · 262 144 · 32 768 = 2^37,
|u·g_j| ≤ 2^30, before its shift by z ≤ 14 only when S is small). Adapting or not: (14)
"sets α = 1 only when the sum of |q| … is then strictly smaller" states a necessary condition;
read as "exactly when" (a smaller sum sets α = 1, a tie or a larger one α = 0), which the
golden vector depends on (the spec lets a sender choose either; the vector is Funnel's
sender's). (15) Σ|q| is the rule, not the payload's length: the way with the smaller sum may
code longer (vector 5's frame 2 codes in 72 bytes with α = 0 chosen, 70 with α = 1; raw
either way), and "costs what it would without it" is loose by the bit α itself.

Self-checks: the CRC check values; every coded payload (also of the frames sent raw) decodes
back to its codes; the encoder matches payloads put by hand symbol by symbol (frames 3 and 4
of vector 3: escape 1 then distance 2; escape -1 then distance 299 as 255, 0, 44); a value equal
to an escape round-trips with the distance 0; values at the ends of the i16 range round-trip;
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
bytes is not valid. Every frame of the four vectors reads back (check and codes; the END
frames of vectors 3 and 4 also their samples and m), and the frames of vectors 3 and 4 come
out coded or raw, with the flags, as the spec's bullet lists say (vector 4: all coded, the
END frame of 40 samples, m = 3, no SATURATED).
Predicted latents (vector 4's tables, lags [1, 2]: t0, t1, then d0 and d1): the difference
tables are found after the latent tables in latent order, one per lag ≥ 1 (also with lags
[1, 0, 3] and [0, 2]); a lag of 0 in a non-empty lag list is a latent not predicted: lags
[0, 0, 0] code exactly as empty lags and as a plain list of tables, and a table set with a
difference table too many or too few is refused. T_j is t0 in window 0 and d0 from window 1
on; t1 in windows 0 and 1 and d1 from window 2 on, x_j predicted from x_{j−4} (window w − 2,
not w − 1); for every frame size up to 512 codes, x_j is predicted exactly when j ≥ L × k, and
never from before the frame's first code. wrap16 adds or subtracts 65 536 once. Put by hand:
a frame whose lag-2 latent takes t1 in its first two windows (one an escape + distance 0) and
d1 from window 2 on equals the encoder's payload, and differs from the same put with d0 in
window 0, with d1 in window 1, or predicted from the window before (lags [1, 1]); last frames
of 1, 2 and 3 windows (fewer windows than latent 1's lag + 1, then one more), bodies put by
hand: latent 1 takes t1 in both windows of a two-window last frame; a frame's first window is
never predicted from the frame before. Differences between codes at or near the ends of the
i16 range wrap and round-trip, put by hand, for lag 1 (windows 0 and 1) and lag 2 (windows 0
and 2). The coder's checks above (escapes with distance 0, distances to the ends of the i16
range, forged payloads refused) for each latent in window 0 (its own table) and in window
max(L_i, 1) (its difference table when predicted), with lags [1, 2], [0, 2] and [1, 0, 3]; a
frame and a last frame sent raw carry the codes x_j, not their differences. Vector 4 by hand,
symbol by symbol: frame 0 (latent 0: t0's escape 2 + distance 98, then the differences 1, 0,
and d0's escape -2 + distance 0; latent 1: 0, 0 with t1, then the differences 0, 0 with d1),
frame 1 (latent 0: t0's escape 2 + distance 32 765 as 255, 126, 254, then the differences
wrapped to 1, 1 and -2 (d0's escape + distance 0); latent 1: 0, 0 with t1, then the
differences 1 and -1 from windows 0 and 1, d1's escapes 1 and -1 each + distance 0), and the
END frame's body (latent 0: t0's escape 2 + distance 3, then the differences 1, 0; latent 1:
0, 0 with t1, then the difference 0 with d1); each equals the encoder's payload and decodes
back to its codes.
Bounded (vector 5's coder, check_bounded): symbols and raw-bit groups by hand (bins 16, −17,
31, 32, 255, 256, 300, −511, 512, −1000, 6553, ±32767/−32768); predictions by hand (−1.5 × 100
is −150: the arithmetic shift; clamped at the ends); payloads put by hand (a class-1 block with
an octave bin and 4 raw bits; a class-0 block with escapes, distance before raw bits; two
blocks of 32 + 1; two channels, one class each); random-ish signals with the i16 ends for E′
0, 1, 2, 3, 100, 32 767, six predictors, 1 to 3 channels, 1 to 65 samples: decoded within E′
(E′ = 0 exactly, with wrapped differences and the bin −32 768); the bin −32 768 round-trips,
+32 768 and −32 769 are refused; forged payloads refused (class K, K + 1, −1; symbol ±28 in
either table; a value past i16; a symbol left over, so the final state is not 0; a word too
many, an odd length, a zero last word). Framing: the largest frames (len 2048 and 2051, 2,055
bytes), a raw frame carries the rebuilt samples, last frames read only under END; refused:
samples 0 or above windows_per_frame × window, len below 3 or above 2N + 3, a body above 2N′.
The same random signals also with vector 5's adaptive stage (n = 3, μ = 1), each segment's α
following the sender's rule (check_choice), the stage winning, losing and tying. The bit α by
hand: a raw-bit symbol of k = 1 (f = 2048, c = 0 or 2048) first in each segment's values, before
its first block only (a payload with the α of each of two channels, 1 then 0; α = 0 and α = 1
payloads of the same bins differ); none with n = 0 (version 7's payloads), and the encoder
refuses an α missing or present against n; the α of a second segment that is not there is a
symbol left over (refused); an empty payload reads α = 0 (from state 0, α = 0 puts nothing).
The adaptive stage (check_adaptive): n outside 0 … 16 or μ outside 0 … 15 refused; by hand,
step by step (f, g, p, q, x, S, k, z, u, the weights and g_1 … g_n after): vector 5's coder on
100, 102, 104, 105 (its weights learnt with the g_j the prediction used, before they move on;
version 7 differs from the third sample on); a negative shift rounding down (⌊−21 / 16⌋ = −2,
not −1); the clamps of a weight (+262 144), of p, of u and of g_1 (f = 40 000 beyond the i16
range), with wrapping at E′ = 0; each also through the sender's loop, the receiver's
rebuilding and a second, literal rebuilding (1-based lists, // and %) from the pseudo-code;
the sender's rule by hand: adapting loses (vector 5's coder on 100, 102, 104, 105: Σ|q| 33
with the stage, 32 without: α = 0, version 7's bins and samples), wins (no fixed prediction,
n = 1, μ = 0, E′ = 0, four samples 10: bins 10, 10, −6, 4, Σ 30 < 40: α = 1, traced step by
step; three samples: 26 < 30, α = 1) and ties (two samples, or any one: α = 0); the payload of
a winning and a tying channel put by hand (α 1 then 0); its α bits flipped decode to the same
bins read the other way, rebuilding 10, 10, −6, 4 (not 10, 10, 10, 10), and vector 5's losing
segment read with α = 1 rebuilds 100, 100, 120 (not 105); each segment starts afresh (two
equal channels, equal α and bins, both ways); n = 0 is version 7's loop (kept
as segment_v7) exactly, for μ 0, 7 and 15; 120 random-ish signals (constant runs, also at
−32768 and 32767, steps, ramps, a triangle wave, noise, alternating ends) with random and
extreme n and μ (0, 1, 16; 0, 15), E′ 0 … 32 767 and seven predictors, 1 to 3 channels, 1 to
341 samples: within E′ (E′ = 0 exactly), the coded payload round-trips, the sender's rebuilt
samples equal the receiver's and the literal rebuilding's, each segment's α follows the
sender's rule (wins with E′ = 0 and E′ ≥ 1, losses, ties; both α in one frame) and an α = 0
segment is n = 0's exactly (the sender's loop, version 7's, an order-0 coder's; the receiver's
and the literal rebuilding of its bins), every intermediate result of the stage's run fits in
48 bits, and every clamp (p, u, a weight, g_1) and a negative shift occur; each payload with
its α bits flipped (all, or channel 0's alone) decodes to the same bins with the flipped α,
rebuilding something else than the samples sent (more often than not; the same only when both
ways rebuild those bins alike), and a payload with any one bit flipped is refused or decodes
to m i16 samples per channel, never raising.
Vector 5: frames 0, 1, 3 coded and frame 2 raw (as its bullets say: the script stops when the
coding decides otherwise); frame 2's signal is (−1)^b(t) · (30001 + ⌊t/2⌋) with b(t) the
number of 1 bits of t (its first four as the spec lists them), channel 1 negated; frame 2's
raw samples equal the rebuild of its coded form (with the α chosen), within 2 of the inputs
and most of them not equal to them, its α 0 and 0 (with the stage it would code shorter, still
not below 64 bytes); every segment's α follows the sender's rule; the coded frames 0, 1 and 3
with their α bits flipped (all, or channel 0's) decode to something else, and under the same
check are not read; frame 1 holds octave bins with ≤ 8 and > 8 raw bits; every frame reads
back under its flags only, within E′ of its inputs.
Window classes (vector 6's table set, three classes, lags [0, 1]; check_classes): class_cost
equals a second, literal implementation (binary digits) for every f = 1 … 4096, lies within
1.05 of 16 (12 − log2 f) for each, and a few values by hand (f = 1: 191, 2048: 15, 4000 and
4095: 0, 4096 floored to 0); class tables of K = 1 or 5, a zero frequency or a sum other than
4096 are refused, and so is a class whose table has another lo, or a list of tables missing;
class_at at both edges of every class. 400 random-ish frames of 1 … 4 windows (values inside,
at and beyond the tables' ends, anywhere in i16): each window's class equals a brute force over
all K^W assignments of the whole frame (a literal class_cost, the cheapest assignment and the
least in lexicographic order: the lowest class on a tie), the payload equals the one put by
hand (class symbol, then the window's values with that class's tables), and it reads back,
codes and classes; every other assignment of classes (all of them up to 3 windows), forced,
reads back with those classes, and its payload differs exactly when the classes do; every class
is chosen, and escapes are coded in classes 1 and 2 (class 0's ends are too rare to be chosen
for one; forced, class 0 codes escapes too). By hand: a window whose cheapest class is 1 (costs
158, 77, 133); ties go to the lower class: vector 6's END frame's window 2 (125 in classes 1
and 2: class 1), mirrored tables with equal class frequencies (windows −1, −1 and 1, 1: class
0), and two frequencies that class_cost rounds alike (4000 and 4050, both 0: class 0, though
class 1 is exactly cheaper), each with class 1 forced reading back as class 1. The class
symbol put after a window's values (in reading order) instead of before, or left out, does not
read back as the frame; a predicted value takes its window's class's difference table; a
classed window's escape followed by a distance past the i16 range is refused, an empty payload
reads class 0 and every table's lo, a class symbol too many is refused; the same tables without
classes code the same payload less the class symbols. Vector 6: each frame's values and
classes as its bullets say, the classes equal to the brute force's, the payloads put by hand
symbol by symbol equal the encoder's and read back (codes and classes), every frame coded,
every frame reading back under its flags only (send_session).

    python3 docs/wire_golden.py           # print the vectors
    python3 docs/wire_golden.py --write   # also fill the blocks in docs/wire-format.md
"""
import pathlib
import re
import struct
import sys
import zlib

MAGIC, VERSION = 0xF5, 11
RESTART = 0x01        # header flags, bit 0
ENTROPY_CODED = 0x02  # header flags, bit 1
BOUNDED = 0x04        # header flags, bit 2: a bounded session (with ENTROPY_CODED)
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


def varint(value) -> bytes:
    """An unsigned integer as LEB128: 7 bits a byte, low bits first, the top bit set on every
    byte but the last; as few bytes as the value needs."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def header(stream_id, flags, model_id, session, channels, codes_per_window, window,
           windows_per_frame, header_interval, frame, start_sample) -> bytes:
    """The stream header: 16 bytes of fields (the flags byte's bits 3 to 7 are the header's
    length less 16), the frame number and the start sample as varints, then the CRC-32 (LE)
    of everything before it."""
    assert len(model_id) == 4
    assert flags & ~(RESTART | ENTROPY_CODED | BOUNDED) == 0, "bits 0 to 2 only"
    assert 1 <= channels <= 16 and window >= 1 and windows_per_frame >= 1
    if flags & BOUNDED:
        # codes_per_window 0 to 64 in a BOUNDED session (with ENTROPY_CODED), 0 only there;
        # windows_per_frame × window × channels ≤ 1024.
        assert flags & ENTROPY_CODED and 0 <= codes_per_window <= 64
        assert windows_per_frame * codes_per_window <= 512
        assert windows_per_frame * window * channels <= 1024
    else:
        assert 1 <= codes_per_window <= 64 and windows_per_frame * codes_per_window <= 512
    assert 0 <= frame < 2**32 and 0 <= start_sample <= 2**64 - 2**56
    numbers = varint(frame) + varint(start_sample)
    length = 16 + len(numbers) + 4
    assert 22 <= length <= 35
    fields = struct.pack("<BBBB4sHBBHBB", MAGIC, VERSION, stream_id, flags | (length - 16) << 3,
                         model_id, session, channels, codes_per_window, window,
                         windows_per_frame, header_interval) + numbers
    assert len(fields) == length - 4
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
    """A static code table ("The entropy coder"; a latent's table or a predicted latent's
    difference table): codes lo ..= hi (i16) with
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


def wrap16(v):
    """v wrapped to i16: 65 536 added or subtracted to bring it into −32 768 … 32 767."""
    if v > I16_MAX:
        v -= 1 << 16
    elif v < I16_MIN:
        v += 1 << 16
    assert I16_MIN <= v <= I16_MAX, "one addition or subtraction is enough"
    return v


class ClassTable:
    """The table of the window classes ("Window classes"): K = 2 to 4 classes, class c with
    frequency cf(c) ≥ 1, the frequencies summing to 4096; ccum(c) is the sum of the frequencies
    of the classes below c (ccum(0) = 0 < ccum(1) < … < ccum(K−1) < 4096). A class is a symbol
    (cf(c), ccum(c)) of the coder, not a table of codes: it has no escapes (nor a lowest code)."""

    def __init__(self, freqs):
        assert 2 <= len(freqs) <= 4, "K = 2 to 4 window classes"
        assert all(f >= 1 for f in freqs) and sum(freqs) == 1 << PRECISION
        self.freqs = list(freqs)
        self.cums = [sum(freqs[:c]) for c in range(len(freqs))]
        assert self.cums[0] == 0 and all(a < b for a, b in zip(self.cums, self.cums[1:]))
        assert self.cums[-1] < 1 << PRECISION

    def __len__(self):
        return len(self.freqs)

    def sym(self, c):
        """The symbol (cf(c), ccum(c)) of class c."""
        assert 0 <= c < len(self.freqs)
        return self.freqs[c], self.cums[c]

    def class_at(self, q):
        """The class c with ccum(c) ≤ q < ccum(c) + cf(c) (every q of 0 … 4095 has one)."""
        for c, (cum, f) in enumerate(zip(self.cums, self.freqs)):
            if cum <= q < cum + f:
                return c
        raise AssertionError(f"no class at {q}")


class TableSet:
    """A model's tables as its blob stores them ("The entropy coder"): first one table per
    latent, in latent order (k = codes_per_window of them), then one difference table for each
    predicted latent, in latent order. The blob's lags say which: empty (no latent is
    predicted), or one byte per latent, its lag L_i (0: not predicted; L_i ≥ 1: predicted from
    the window L_i before, in the same frame).

    Window classes ("Window classes", version 10): classes, the frequencies cf(0 … K−1) of
    K = 2 to 4 window classes, or empty (one class: no class symbol is sent). With classes,
    tables is a list of K lists, every table once per class, class after class (as the blob
    holds them), each list as above, and every class's table t has the same lo and hi; tables[c]
    are class c's tables. Without, tables is the one list.

    A plain list of k tables stands for a table set without predicted latent (table_set), and
    so does an empty lag list."""

    def __init__(self, tables, lags=(), classes=()):
        self.classes = ClassTable(classes) if classes else None
        self.by_class = [list(t) for t in tables] if classes else [list(tables)]
        assert len(self.by_class) == len(classes or [1]), "one list of tables per class"
        self.tables = self.by_class[0]  # class 0's (the only ones without classes)
        self.lags = list(lags)
        # k: one lag per latent when the lags are not empty; else every table is a latent's.
        self.k = len(self.lags) if self.lags else len(self.tables)
        assert 1 <= self.k <= 64, "1 to 64 codes per window"
        assert all(0 <= lag <= 0xFF for lag in self.lags), "a lag is one byte"
        for class_tables in self.by_class:
            assert all(isinstance(t, Table) for t in class_tables)
            assert len(class_tables) == self.k + sum(1 for lag in self.lags if lag >= 1), \
                "one table per latent, then one difference table per predicted latent"
            assert [(t.lo, t.hi) for t in class_tables] == \
                [(t.lo, t.hi) for t in self.tables], "every class's table t has the same lo, hi"

    @property
    def class_count(self):
        """K: the number of window classes (1 without classes)."""
        return len(self.by_class)

    def lag(self, latent):
        """L_i: 0 (not predicted) when the lags are empty."""
        assert 0 <= latent < self.k
        return self.lags[latent] if self.lags else 0

    def is_predicted(self, latent):
        return self.lag(latent) >= 1

    def latent(self, latent, c=0):
        """Latent i's own table (of class c)."""
        return self.by_class[c][latent]

    def difference(self, latent, c=0):
        """Latent i's difference table (of class c): after the k latent tables, the difference
        tables of the predicted latents in latent order, so latent i's is number (predicted
        latents below i) among them."""
        assert self.is_predicted(latent)
        below = sum(1 for other in range(latent) if self.is_predicted(other))
        return self.by_class[c][self.k + below]

    def predicts(self, j):
        """Whether x_j (of latent i = j mod k) is coded as a difference: latent i is predicted,
        with lag L = L_i ≥ 1, and j ≥ L × k (any window of the frame but its first L)."""
        lag = self.lag(j % self.k)
        return lag >= 1 and j >= lag * self.k

    def reference(self, j):
        """j − L × k: the index of the code x_j is predicted from (same latent, L windows
        before, in the same frame); only for a predicted x_j, and never before the frame's
        first code."""
        assert self.predicts(j)
        before = j - self.lag(j % self.k) * self.k
        assert 0 <= before < j and before % self.k == j % self.k, "within the frame"
        return before

    def table(self, j, c=0):
        """T_j (of class c, the class of x_j's window): latent (j mod k)'s difference table when
        x_j is predicted, else its table."""
        return self.difference(j % self.k, c) if self.predicts(j) else self.latent(j % self.k, c)

    def values(self, codes):
        """The values v_j coded for the codes x_j of one frame: x_j − x_{j−L×k} wrapped to i16
        when x_j is predicted, else x_j (whatever the windows' classes)."""
        assert all(I16_MIN <= x <= I16_MAX for x in codes), "codes are i16"
        return [wrap16(x - codes[self.reference(j)]) if self.predicts(j) else x
                for j, x in enumerate(codes)]

    def codes(self, values):
        """The decoder's way back: x_j = v_j + x_{j−L×k} wrapped to i16 for a predicted code,
        else x_j = v_j."""
        assert all(I16_MIN <= v <= I16_MAX for v in values), "values are i16"
        codes = []
        for j, v in enumerate(values):
            codes.append(wrap16(v + codes[self.reference(j)]) if self.predicts(j) else v)
        return codes


def table_set(tables):
    """tables as a TableSet: a plain list of tables is one without predicted latent."""
    return tables if isinstance(tables, TableSet) else TableSet(tables)


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


def symbols_of(v, table):
    """The symbols (f, c) a value v coded with this table is sent as, in reading order:
    t = min(max(v, lo), hi), then, when t is an escape, the distance symbols of d = |v − t|."""
    assert I16_MIN <= v <= I16_MAX, "values are i16"
    t = min(max(v, table.lo), table.hi)
    group = [table.sym(t)]
    if table.is_escape(t):
        group += [dist_sym(u) for u in distance_symbols(abs(v - t))]
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


# class_cost's F[m]: 16 × log2 of the middle of the mantissas m stands for, rounded.
CLASS_COST_F = [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 13, 14, 15, 16]


def class_cost(f):
    """class_cost(f) = 192 − (16 × ⌊log2 f⌋ + F[m]), floored at 0, with m the four bits below
    the leading 1 of f (after a shift left when f < 16): the information content of a symbol
    of frequency f (1 … 4096), in sixteenths of a bit, to within 1.05 ("Window classes")."""
    assert 1 <= f <= 1 << PRECISION
    e = f.bit_length() - 1  # ⌊log2 f⌋
    m = ((f >> (e - 4)) if e >= 4 else (f << (4 - e))) & 0xF
    return max(0, 16 * PRECISION - (16 * e + CLASS_COST_F[m]))


def window_cost(tables, values, w, c):
    """What window w's class symbol c and its value symbols cost with class c's tables, by
    class_cost: cf(c), then for each of the window's values v_j its symbol t_j = min(max(v_j,
    lo), hi) in class c's T_j (an escaped value's symbol is its clamped end; its distance is
    left out, the same in every class)."""
    k = tables.k
    cost = class_cost(tables.classes.sym(c)[0])
    for j in range(w * k, (w + 1) * k):
        table = tables.table(j, c)
        cost += class_cost(table.f(min(max(values[j], table.lo), table.hi)))
    return cost


def cheapest_class(tables, values, w):
    """The class Funnel's encoder takes for window w: the smallest window_cost, the lowest
    class on a tie (0 without classes)."""
    if tables.classes is None:
        return 0
    return min(range(tables.class_count), key=lambda c: (window_cost(tables, values, w, c), c))


def rans_encode(codes, tables, classes=None) -> bytes:
    """Encoding, as in "The entropy coder": the value v_j with table T_j ("What is coded":
    x_j − x_{j−L×k} wrapped to i16 with latent (j mod k)'s difference table when that latent
    is predicted, with lag L ≥ 1, and j ≥ L × k, else x_j with the latent's table) in reverse
    order j = n−1 … 0 from state 0. Each value v is sent as t = min(max(v, lo), hi); when t is
    an escape (t = lo or t = hi), the distance d = |v − t| follows as 8-bit symbols. Being a
    stack, the coder puts first the distance symbols (if any) in the reverse of their reading
    order, then t.
    With window classes ("Window classes"), window w (codes x_{wk} … x_{wk+k−1}) is coded with
    its class c_w's tables, and the symbol c_w (cf(c_w), ccum(c_w)) is put after the window's
    values (after v_{wk}'s symbols) so that it is read before them; c_w is the cheapest class
    (cheapest_class), or classes[w] when classes is given (a sender may choose any)."""
    tables = table_set(tables)
    k = tables.k
    # A frame holds whole windows; a number of codes that is not (the framing checks' raw
    # frames) is coded as such only without classes.
    assert tables.classes is None or len(codes) % k == 0, "whole windows"
    values = tables.values(codes)
    windows = -(-len(codes) // k)
    if classes is None:
        classes = [cheapest_class(tables, values, w) for w in range(windows)]
    assert len(classes) == windows and all(0 <= c < tables.class_count for c in classes)
    s, words = 0, []
    for j in reversed(range(len(codes))):
        c = classes[j // k]
        table, v = tables.table(j, c), values[j]
        assert I16_MIN <= v <= I16_MAX, "values are i16"
        t = min(max(v, table.lo), table.hi)
        if table.is_escape(t):
            for u in reversed(distance_symbols(abs(v - t))):
                s = put(s, words, *dist_sym(u))
        s = put(s, words, *table.sym(t))
        if j % k == 0 and tables.classes is not None:
            s = put(s, words, *tables.classes.sym(c))
    return finish(s, words)


def rans_decode(payload, n, tables):
    """The n codes of a payload (rans_read), or None if it is not valid."""
    read = rans_read(payload, n, tables)
    return None if read is None else read[0]


def rans_read(payload, n, tables):
    """Decoding, as in "The entropy coder": words read from the end of the payload; an empty
    payload starts at state 0, otherwise its length must be even and the state starts as the
    last word (not 0), then takes in one more word if any remain. Reading a symbol (f, c) from
    q = s & 0xFFF is s = (s >> 12) × f + q − c, then a word is taken in when s < 2^16 and words
    remain. Per code: t is the code with cum(t) ≤ q < cum(t) + f(t); if t is an escape (t = lo
    or t = hi), the distance is read, each symbol u = q >> 4 (f_u = 16, c_u = 16 u): d = u0, or,
    when u0 = 255, d = 255 + (u1 << 8) + u2; x = lo − d after lo, x = hi + d after hi, which
    must lie in the i16 range; otherwise x = t. With a table set that predicts latents, this
    reads the value v_j with table T_j, and x_j = v_j + x_{j−L×k} wrapped to i16 for a
    predicted code ("What is coded"). With window classes, before each window's first value
    (j mod k = 0) the class c with ccum(c) ≤ q < ccum(c) + cf(c) is read, and the window's
    values with class c's tables.
    Returns (the n codes, the classes read, one per window begun; [] without classes), or None
    if the payload is not valid (odd length, a zero last word, a value outside the i16 range, a
    word left unread, or the state not ending at 0)."""
    tables = table_set(tables)
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

    values, classes, c = [], [], 0
    for j in range(n):
        if j % tables.k == 0 and tables.classes is not None:
            q = s & mask
            c = tables.classes.class_at(q)
            s = read_symbol(s, *tables.classes.sym(c), q)
            classes.append(c)
        table = tables.table(j, c)
        q = s & mask
        t = table.code_at(q)
        s = read_symbol(s, *table.sym(t), q)
        if table.is_escape(t):
            s, d = read_u(s)
            if d == 255:
                s, u1 = read_u(s)
                s, u2 = read_u(s)
                d = 255 + (u1 << 8) + u2
            v = table.lo - d if t == table.lo else table.hi + d
            if not I16_MIN <= v <= I16_MAX:
                return None  # a value outside the i16 range: not valid
        else:
            v = t
        values.append(v)
    return (tables.codes(values), classes) if not words and s == 0 else None


def put_by_hand(groups) -> bytes:
    """The payload of a frame given, code after code, the list of symbols (f, c) that code's
    value is sent as in reading order (the symbol of its table T_j, then its distance symbols if
    any), put in the encoder's order: codes in reverse, and within a code its symbols in
    reverse."""
    s, words = 0, []
    for group in reversed(groups):
        for f, c in reversed(group):
            s = put(s, words, f, c)
    return finish(s, words)


def ordinary_groups(tables, n):
    """A frame of n values, each the value lo + 1 of its table T_j (not an escape)."""
    tables = table_set(tables)
    return [[tables.table(j).sym(tables.table(j).lo + 1)] for j in range(n)]


def check_coder(tables):
    """The self-checks of the coder, on the given tables (a list, or a TableSet that predicts
    latents; see the module's docstring). They are put in terms of the values v_j, and a frame's
    codes are the codes whose values those are (TableSet.codes). Each latent is checked in
    window 0 (its own table) and in window max(L_i, 1): a predicted latent's first predicted
    window (its difference table), a latent not predicted's window 1 (its own table again)."""
    tables = table_set(tables)
    k = tables.k
    windows = 1 + max(max(tables.lag(i), 1) for i in range(k))
    n = windows * k
    plain = [tables.table(j).lo + 1 for j in range(n)]  # values
    positions = [(latent, at) for latent in range(k)
                 for at in (latent, max(tables.lag(latent), 1) * k + latent)]
    for latent in range(k):
        at = max(tables.lag(latent), 1) * k + latent
        assert tables.predicts(at) == tables.is_predicted(latent)
        assert tables.table(latent) is tables.latent(latent), "window 0: the latent's own table"
        if tables.is_predicted(latent):
            assert tables.table(at) is tables.difference(latent)

    # The distance symbols of the spec's examples.
    assert distance_symbols(0) == [0] and distance_symbols(2) == [2]
    assert distance_symbols(254) == [254] and distance_symbols(255) == [255, 0, 0]
    assert distance_symbols(299) == [255, 0, 44], "frame 4: distance 299 as 255, 0, 44"

    for latent, at in positions:
        table = tables.table(at)  # in window max(L_i, 1), the difference table if predicted
        for end, sign in ((table.lo, -1), (table.hi, +1)):
            # A value equal to an escape round-trips with the distance 0.
            values = list(plain)
            values[at] = end
            codes = tables.codes(values)
            groups = ordinary_groups(tables, n)
            groups[at] = [table.sym(end), dist_sym(0)]
            payload = put_by_hand(groups)
            assert rans_encode(codes, tables) == payload, ("escape, distance 0", latent, end)
            assert rans_decode(payload, n, tables) == codes, ("escape, distance 0", latent, end)

            # Values beyond the escape, up to the end of the i16 range, round-trip.
            bound = I16_MIN if sign < 0 else I16_MAX
            for d in (1, 2, 254, 255, 256, 299, 510, 511, 767, abs(bound - end)):
                v = end + sign * d
                if not I16_MIN <= v <= I16_MAX:
                    continue
                values = list(plain)
                values[at] = v
                codes = tables.codes(values)
                assert tables.values(codes) == values
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
    values = list(plain)
    values[0] = -300 if tables.table(0).lo > -300 else tables.table(0).hi + 300
    codes = tables.codes(values)
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
    assert 0 <= length <= 2 * 1024 + SAMPLES_SIZE, "len ≤ 2n + 3 ≤ 1027; bounded: 2N + 3 ≤ 2051"
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
    codes_per_window = table_set(tables).k
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


def send_session(frames, last, tables, window, windows_per_frame, header_interval, common,
                 report=None):
    """The data frames of an entropy-coded session from frame 0 (the header before frame 0 is
    the caller's; no other is due: the frames are fewer than header_interval): frames, a list
    of (codes, frame_flags, the spec says coded?), then the END frame, last = (codes, samples,
    frame_flags, the spec says coded?). Each frame is checked to read back (check, codes; the
    END frame also its samples and m) under its number and flags and under no other flags,
    and to come out coded or raw as the spec says. Returns the frames' bytes."""
    k = table_set(tables).k
    n = windows_per_frame * k
    assert len(frames) + 1 <= header_interval, "no header due after frame 0"
    items, problems = [], []
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
        assert read_end_frame(item, window, windows_per_frame, k, frame=number,
                              frame_flags=flags | END, **common) is None
        assert (length == 2 * n) == (not sent_coded)
        items.append(item)

    # The END frame, right behind the others.
    number = len(frames)
    codes, samples, flags, want_coded = last
    assert number % header_interval != 0, "no header before the END frame"
    m = windows_of(samples, window)
    assert len(codes) == m * k
    item, sent_coded, coded_len = end_frame(codes, samples, tables, window=window,
                                            windows_per_frame=windows_per_frame, frame=number,
                                            frame_flags=flags, **common)
    length, size = read_length(item, n, last=True)
    if report is not None:
        report.append((number, sent_coded, coded_len, length, size, len(item), flags | END,
                       f" samples={samples} m={m}"))
    if sent_coded != want_coded:
        problems.append(f"frame {number}: coded body {coded_len} bytes (2n' = {2 * m * k}), "
                        f"sent {'coded' if sent_coded else 'raw'}; the spec says "
                        f"{'coded' if want_coded else 'raw'}")
    # The receiver reads it back (samples, m, codes) under END and its flags, and under no
    # other flags: not without END (as an ordinary frame), not with SATURATED flipped.
    read = read_end_frame(item, window, windows_per_frame, k, frame=number,
                          frame_flags=flags | END, **common)
    assert read is not None and read[:2] == (samples, m) and read[3] == len(item)
    assert decode_payload(read[2], m * k, tables) == codes
    assert read_end_frame(item, window, windows_per_frame, k, frame=number,
                          frame_flags=(flags ^ SATURATED) | END, **common) is None
    for other in (0, SATURATED):
        assert read_entropy_frame(item, n, frame=number, frame_flags=other, **common) is None
    assert item[size:size + 3] == u24(samples) and length == 3 + len(read[2])
    assert (length - 3 == 2 * m * k) == (not sent_coded)
    items.append(item)

    assert not problems, "\n".join(problems)
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
    # Frames 0 … 5, then frame 6, the END frame; no header before it (6 is not a multiple of
    # 64).
    codes, samples, flags, want_coded = last
    m = windows_of(samples, window)
    assert len(frames) == 6 and m == 3 and len(codes) == m * 3
    assert samples - (m - 1) * window == 10 and m * window - samples == 54, "10 + 54 padding"
    items += send_session(frames, last, tables, window, windows_per_frame, header_interval,
                          common, report)
    assert items[6] == length_prefix(24) + i16_codes([300] * 11 + [-300]) + items[6][-2:]
    return items


def check_prediction(tables):
    """The self-checks of predicted latents ("What is coded"), on vector 4's table set (lags
    [1, 2], codes_per_window 2; see the module's docstring)."""
    assert tables.k == 2 and tables.lags == [1, 2]
    t0, t1 = tables.latent(0), tables.latent(1)
    d0, d1 = tables.difference(0), tables.difference(1)
    assert tables.tables == [t0, t1, d0, d1], "latent tables, then the difference tables"

    # The difference tables follow the k latent tables, one per predicted latent in latent
    # order; a lag of 0 in a non-empty lag list is a latent not predicted, with no difference
    # table. Lags [1, 0, 3]: latent 0's difference table is the fourth table, latent 2's the
    # fifth; latent 1 always takes its own, latent 0 its difference table from window 1 on,
    # latent 2 from window 3 on.
    five = [Table(-1, [1, 4094, 1]), Table(-2, [100, 3800, 100, 96]), Table(-3, [1] * 5 + [4091]),
            Table(-1, [2, 4092, 2]), Table(-2, [4, 4088, 2, 2])]
    three = TableSet(five, lags=[1, 0, 3])
    assert three.k == 3 and [three.is_predicted(i) for i in range(3)] == [True, False, True]
    assert three.difference(0) is five[3] and three.difference(2) is five[4]
    assert [three.table(j) for j in range(15)] == \
        five[:3] + [five[3], five[1], five[2]] * 2 + [five[3], five[1], five[4]] * 2
    # Lags [0, 2]: latent 0 not predicted, so latent 1's difference table is the third table.
    two = TableSet([t0, t1, d1], lags=[0, 2])
    assert not two.is_predicted(0) and two.difference(1) is d1
    assert [two.table(j) for j in range(8)] == [t0, t1, t0, t1, t0, d1, t0, d1]
    # Lags all 0 (not empty) are no prediction at all, as an empty lag list and a plain list
    # of tables: the same tables T_j, values and payloads; and no difference table.
    zeros, empty = TableSet(five[:3], lags=[0, 0, 0]), TableSet(five[:3], lags=[])
    assert zeros.k == empty.k == 3 and not any(zeros.is_predicted(i) for i in range(3))
    assert all(zeros.table(j) is empty.table(j) is five[j % 3] for j in range(12))
    assert not any(zeros.predicts(j) for j in range(512))
    codes = [0, 1, 2, -1, 1, 300, 0, -300, 2, 5, -2, 3]
    assert zeros.values(codes) == codes and zeros.codes(codes) == codes
    assert rans_encode(codes, zeros) == rans_encode(codes, empty) == rans_encode(codes, five[:3])
    assert rans_decode(rans_encode(codes, zeros), 12, zeros) == codes
    for wrong in ((five[:4], [0, 0, 0]), (five[:3], [1, 0, 0]), (five, [1, 0, 0])):
        try:
            TableSet(*wrong)
        except AssertionError:
            continue
        raise AssertionError(f"{wrong[1]}: one difference table per lag ≥ 1, no other")

    # T_j for vector 4: latent 0 (lag 1) takes its own table in window 0 and its difference
    # table from window 1 on; latent 1 (lag 2) its own table in windows 0 and 1 and its
    # difference table from window 2 on, predicted from window w − 2 (not w − 1).
    assert [tables.table(j) for j in range(8)] == [t0, t1, d0, t1, d0, d1, d0, d1]
    assert [tables.predicts(j) for j in range(8)] == [False, False, True, False] + [True] * 4
    assert {j: tables.reference(j) for j in range(8) if tables.predicts(j)} == \
        {2: 0, 4: 2, 5: 1, 6: 4, 7: 3}
    # Prediction never reaches before the frame's first window, whatever the frame's windows
    # (also a last frame of fewer windows than the lag + 1): x_j is predicted only when
    # j ≥ L × k, and then from x_{j−L×k} of the same latent, in the same frame.
    for n in range(0, 513):
        for j in range(n):
            lag = tables.lag(j % 2)
            assert tables.predicts(j) == (j >= lag * 2)
            assert tables.reference(j) == j - lag * 2 >= 0 if tables.predicts(j) else True

    # Wrapping to i16: one addition or subtraction of 65 536.
    assert [wrap16(v) for v in (0, 1, -1, I16_MAX, I16_MIN)] == [0, 1, -1, I16_MAX, I16_MIN]
    assert wrap16(I16_MAX + 1) == I16_MIN and wrap16(I16_MIN - 1) == I16_MAX
    assert wrap16(65535) == -1 and wrap16(-65535) == 1 and wrap16(65534) == -2

    # Put by hand: latent 0's codes 1, 1, 1, 1 are t0's 1 (not an escape), then the
    # differences 0; latent 1's codes 0, 1, 0, 1 are t1's 0 and 1 (an escape: the distance 0
    # follows) in windows 0 and 1, then the differences 0 - 0 = 0 and 1 - 1 = 0 from windows 0
    # and 1. Put otherwise, the payload differs: latent 0's window 0 with d0; latent 1's
    # window 1 with d1 (as if predicted from before the frame); latent 1 predicted from the
    # window before (w − 1: the differences 1, -1, 1, escapes of d1).
    codes = [1, 0, 1, 1, 1, 0, 1, 1]
    assert tables.values(codes) == [1, 0, 0, 1, 0, 0, 0, 0]
    own = [[t0.sym(1)], [t1.sym(0)], [d0.sym(0)], [t1.sym(1), dist_sym(0)],
           [d0.sym(0)], [d1.sym(0)], [d0.sym(0)], [d1.sym(0)]]
    payload = put_by_hand(own)
    assert rans_encode(codes, tables) == payload and rans_decode(payload, 8, tables) == codes
    by_lag_1 = [[t0.sym(1)], [t1.sym(0)], [d0.sym(0)], [d1.sym(1), dist_sym(0)],
                [d0.sym(0)], [d1.sym(-1), dist_sym(0)], [d0.sym(0)], [d1.sym(1), dist_sym(0)]]
    assert rans_encode(codes, TableSet(tables.tables, lags=[1, 1])) == put_by_hand(by_lag_1)
    for at, change in ((0, [d0.sym(1)]), (3, [d1.sym(1), dist_sym(0)])):
        wrong = list(own)
        wrong[at] = change
        assert put_by_hand(wrong) != payload and rans_decode(put_by_hand(wrong), 8, tables) != codes
    assert put_by_hand(by_lag_1) != payload
    assert rans_decode(put_by_hand(by_lag_1), 8, tables) != codes

    # A last frame of fewer windows than latent 1's lag + 1: nothing of latent 1 is predicted.
    # One window (16 samples: no prediction at all), two windows (20 samples: latent 0
    # predicted in window 1, latent 1 not: t1 in both windows), and three (40 samples: latent 1
    # predicted in window 2 from window 0): the body put by hand.
    ids = dict(window=16, windows_per_frame=4, stream_id=2, session=0x0304, frame=9,
               frame_flags=0)
    for samples, codes, groups in (
            (16, [1, 1], [[t0.sym(1)], [t1.sym(1), dist_sym(0)]]),
            (20, [1, 1, 1, 1], [[t0.sym(1)], [t1.sym(1), dist_sym(0)],
                                [d0.sym(0)], [t1.sym(1), dist_sym(0)]]),
            (40, [1, 1, 1, 1, 1, 1], [[t0.sym(1)], [t1.sym(1), dist_sym(0)],
                                      [d0.sym(0)], [t1.sym(1), dist_sym(0)],
                                      [d0.sym(0)], [d1.sym(0)]])):
        m = windows_of(samples, 16)
        assert len(codes) == 2 * m
        assert [tables.predicts(j) for j in range(2 * m)] == \
            [False, False, True, False, True, True][:2 * m]
        item, sent_coded, _ = end_frame(codes, samples, tables, **ids)
        assert sent_coded and item[4:-2] == put_by_hand(groups), samples
        assert rans_decode(item[4:-2], 2 * m, tables) == codes
    # Nor is a frame's first window predicted from the frame before: codes 101, 101 of latent 0
    # are coded 101 (t0's escape 2, then the distance 99), then the difference 0, whatever the
    # frame before held; likewise latent 1's codes 3, 3 in windows 0 and 1 are t1's escape 1,
    # then the distance 2, twice (neither predicted).
    assert rans_encode([101, 3, 101, 3], tables) == put_by_hand(
        [[t0.sym(2), dist_sym(99)], [t1.sym(1), dist_sym(2)],
         [d0.sym(0)], [t1.sym(1), dist_sym(2)]])

    # Differences at the ends of the i16 range wrap and round-trip, put by hand with the
    # difference table: x_{j−L×k} and x_j each at or near either end; for latent 0 (lag 1) in
    # windows 0 and 1, for latent 1 (lag 2) in windows 0 and 2.
    ends = (I16_MIN, I16_MIN + 1, I16_MIN + 2, -1, 0, 1, I16_MAX - 2, I16_MAX - 1, I16_MAX)
    for before in ends:
        for x in ends:
            codes = [before, 0, x, 0]
            v = tables.values(codes)[2]
            assert v == wrap16(x - before) and I16_MIN <= v <= I16_MAX
            assert (v - (x - before)) % (1 << 16) == 0
            groups = [symbols_of(before, t0), [t1.sym(0)], symbols_of(v, d0), [t1.sym(0)]]
            payload = put_by_hand(groups)
            assert rans_encode(codes, tables) == payload, (before, x)
            assert rans_decode(payload, 4, tables) == codes, (before, x)

            codes = [0, before, 0, 0, 0, x]
            assert tables.values(codes) == [0, before, 0, 0, 0, v]
            groups = [[t0.sym(0)], symbols_of(before, t1), [d0.sym(0)], [t1.sym(0)],
                      [d0.sym(0)], symbols_of(v, d1)]
            payload = put_by_hand(groups)
            assert rans_encode(codes, tables) == payload, ("lag 2", before, x)
            assert rans_decode(payload, 6, tables) == codes, ("lag 2", before, x)

    # The coder's checks (escapes with the distance 0, distances up to the ends of the i16
    # range, forged payloads) in window 0 with the latents' own tables, and with the
    # difference tables in latent 0's window 1 and latent 1's window 2.
    check_coder(tables)
    check_coder(two)
    check_coder(three)

    # A frame sent raw carries the codes x_j themselves, not their differences.
    codes = [I16_MAX, I16_MIN, I16_MIN, I16_MAX, 300, -300, -300, 300]
    assert tables.values(codes) != codes
    item, sent_coded, _ = entropy_coded_frame(codes, tables, stream_id=2, session=0x0304,
                                              frame=9, frame_flags=0)
    assert not sent_coded and item[1:-2] == i16_codes(codes)
    assert decode_payload(item[1:-2], 8, tables) == codes
    item, sent_coded, _ = end_frame(codes[:6], 40, tables, **ids)
    assert not sent_coded and item[4:-2] == i16_codes(codes[:6])


def golden_4(report=None):
    common = dict(stream_id=2, session=0x0304)
    # Lags [1, 2]: latent 0 predicted from the window before, latent 1 from the window two
    # before. Latent 0's table -2 ..= 2, latent 1's -1 ..= 1, then latent 0's difference
    # table -2 ..= 2 and latent 1's -1 ..= 1.
    tables = TableSet([Table(-2, [8, 1000, 2080, 1000, 8]),
                       Table(-1, [1, 4094, 1]),
                       Table(-2, [16, 600, 2864, 600, 16]),
                       Table(-1, [100, 3896, 100])], lags=[1, 2])
    t0, t1, d0, d1 = tables.tables
    check_prediction(tables)
    # (codes, frame_flags, the spec's bullet: coded?)
    frames = [
        ([100, 0, 101, 0, 101, 0, 99, 0], 0, True),
        ([32767, 0, -32768, 0, -32767, 1, 32767, -1], 0, True),
    ]
    # Frame 2, the last (END): 40 samples, so m = 3 windows (the third holds 8 samples and 8
    # of padding), 6 codes, coded.
    last = ([5, 0, 6, 0, 6, 0], 40, 0, True)

    # Frame 0: latent 0's values are 100 (its table's escape 2, then the distance 98), then the
    # differences 1, 0 and -2 (the difference table's escape -2, then the distance 0); latent
    # 1's are 0, 0 (its own table), then the differences 0, 0 (its difference table). Put by
    # hand symbol by symbol.
    assert tables.values(frames[0][0]) == [100, 0, 1, 0, 0, 0, -2, 0]
    assert distance_symbols(98) == [98]
    by_hand = put_by_hand([
        [t0.sym(2), dist_sym(98)], [t1.sym(0)],
        [d0.sym(1)], [t1.sym(0)],
        [d0.sym(0)], [d1.sym(0)],
        [d0.sym(-2), dist_sym(0)], [d1.sym(0)],
    ])
    assert rans_encode(frames[0][0], tables) == by_hand
    assert rans_decode(by_hand, 8, tables) == frames[0][0]

    # Frame 1: latent 0's differences wrap to 1, 1 and -2 (32767 → -32768 → -32767 → 32767);
    # latent 0's first value, 32767, is its table's escape 2 then the distance 32765 (255,
    # 126, 254). Latent 1's values are 0, 0 (its own table), then the differences 1 - 0 = 1
    # and -1 - 0 = -1 from windows 0 and 1: the escapes 1 and -1 of its difference table,
    # each followed by the distance 0.
    assert tables.values(frames[1][0]) == [32767, 0, 1, 0, 1, 1, -2, -1]
    assert d1.is_escape(1) and d1.is_escape(-1)
    assert distance_symbols(32765) == [255, 126, 254]
    by_hand = put_by_hand([
        [t0.sym(2), dist_sym(255), dist_sym(126), dist_sym(254)], [t1.sym(0)],
        [d0.sym(1)], [t1.sym(0)],
        [d0.sym(1)], [d1.sym(1), dist_sym(0)],
        [d0.sym(-2), dist_sym(0)], [d1.sym(-1), dist_sym(0)],
    ])
    assert rans_encode(frames[1][0], tables) == by_hand
    assert rans_decode(by_hand, 8, tables) == frames[1][0]

    # Frame 2 (END): the first window of the last frame is not predicted either: 5 is latent
    # 0's escape 2, then the distance 3; then the differences 1 and 0. Latent 1: 0, 0 with
    # its own table, then the difference 0 (window 2 from window 0) with its difference table.
    codes, samples, flags, _ = last
    assert tables.values(codes) == [5, 0, 1, 0, 0, 0]
    by_hand = put_by_hand([[t0.sym(2), dist_sym(3)], [t1.sym(0)],
                           [d0.sym(1)], [t1.sym(0)], [d0.sym(0)], [d1.sym(0)]])
    assert rans_encode(codes, tables) == by_hand
    assert rans_decode(by_hand, 6, tables) == codes

    window, windows_per_frame, header_interval = 16, 4, 64
    m = windows_of(samples, window)
    assert m == 3 and len(codes) == m * 2
    assert samples - (m - 1) * window == 8 and m * window - samples == 8, "8 + 8 padding"
    items = [header(flags=RESTART | ENTROPY_CODED, model_id=MODEL_ID, channels=1,
                    codes_per_window=2, window=window, windows_per_frame=windows_per_frame,
                    header_interval=header_interval, frame=0, start_sample=0, **common)]
    # Frames 0 and 1, then frame 2, the END frame; no header before it (2 is not a multiple of
    # 64).
    items += send_session(frames, last, tables, window, windows_per_frame, header_interval,
                          common, report)
    assert len(items) == 4 and items[3][1:4] == u24(40)
    assert items[3][4:-2] == by_hand, "the END frame's body is the coded codes"
    return items


# Window classes ("Window classes", version 10).

def class_cost_literal(f):
    """class_cost written a second way, from the words of the definition: ⌊log2 f⌋ is the
    position of the leading 1 of f's binary digits, m the four digits after it (zeros shifted
    in when fewer follow, that is f < 16), F[m] looked up, 192 − (16 × ⌊log2 f⌋ + F[m])
    floored at 0."""
    digits = bin(f)[2:]
    m = int((digits[1:] + "0000")[:4], 2)
    return max(0, 192 - (16 * (len(digits) - 1) + CLASS_COST_F[m]))


def classes_by_brute_force(tables, codes):
    """The classes Funnel's encoder gives the windows of codes, found another way: every
    assignment of classes to the windows (K^W of them), each costed whole (class_cost_literal
    over every window's class symbol and value symbols, an escaped value's symbol its clamped
    end, distances left out), the cheapest assignment taken and, among the cheapest, the least
    in lexicographic order (the lowest class in the first window that differs). The cost of an
    assignment is a sum over its windows, so this is the lowest cheapest class of each window."""
    import itertools
    k, K = tables.k, tables.class_count
    values = tables.values(codes)
    windows = len(codes) // k

    def cost(assignment):
        total = 0
        for w, c in enumerate(assignment):
            total += class_cost_literal(tables.classes.freqs[c])
            for j in range(w * k, (w + 1) * k):
                table = tables.table(j, c)
                t = min(max(values[j], table.lo), table.hi)
                total += class_cost_literal(table.freqs[t - table.lo])
        return total

    best = min(itertools.product(range(K), repeat=windows), key=lambda a: (cost(a), a))
    return list(best)


def class_groups(tables, codes, classes):
    """The symbol groups of a classed frame in reading order, for put_by_hand: per window its
    class symbol (cf(c), ccum(c)) alone, then each of its values' symbols with class c's table
    T_j (symbols_of: t_j, then its distance symbols at an escape)."""
    k = tables.k
    values = tables.values(codes)
    groups = []
    for j, v in enumerate(values):
        c = classes[j // k]
        if j % k == 0:
            groups.append([tables.classes.sym(c)])
        groups.append(symbols_of(v, tables.table(j, c)))
    return groups


def check_classes(tables):
    """The self-checks of window classes (see the module's docstring), on vector 6's table set
    (three classes, lags [0, 1])."""
    assert tables.class_count == 3 and tables.lags == [0, 1] and tables.k == 2

    # class_cost: as written two ways, for every frequency; the information content
    # 16 × (12 − log2 f) to within 1.05 sixteenths of a bit; floored at 0 (f = 4096 would be
    # −1); a few by hand.
    import math
    for f in range(1, 4097):
        assert class_cost(f) == class_cost_literal(f), f
        assert abs(class_cost(f) - 16 * (PRECISION - math.log2(f))) <= 1.05, f
    assert [class_cost(f) for f in (1, 2, 3, 15, 16, 17, 2048, 3072, 4000, 4095, 4096)] == \
        [191, 175, 166, 129, 127, 126, 15, 6, 0, 0, 0]
    assert 16 * PRECISION - (16 * 12 + CLASS_COST_F[0]) == -1, "4096: floored at 0"

    # The class table: K = 2 to 4, each cf ≥ 1, summing to 4096; the class at q is the one
    # with ccum(c) ≤ q < ccum(c) + cf(c), at both edges of each class.
    for wrong in ([4096], [1024] * 4 + [0], [1024] * 5, [2048, 2047], [0, 4096], []):
        try:
            ClassTable(wrong)
        except AssertionError:
            continue
        raise AssertionError(f"class frequencies {wrong} accepted")
    ct = tables.classes
    for c in range(len(ct)):
        f, cum = ct.sym(c)
        assert ct.class_at(cum) == c and ct.class_at(cum + f - 1) == c
    # Every class's table t has the same lo and hi; one list of tables per class.
    t0s = [tables.latent(0, c) for c in range(3)]
    for wrong in ([tables.by_class[0], tables.by_class[1]],
                  [tables.by_class[0], tables.by_class[1],
                   [Table(-2, [4, 64, 3960, 64, 4])] + tables.by_class[2][1:]]):
        try:
            TableSet(wrong, lags=[0, 1], classes=tables.classes.freqs)
        except AssertionError:
            continue
        raise AssertionError("a class's tables other than the others' (or one list missing)")
    assert all(t.lo == t0s[0].lo and t.hi == t0s[0].hi for t in t0s)

    # Random-ish frames of 1 … 4 windows (values inside the tables, at their ends, beyond them,
    # anywhere in i16): the encoder's classes are the brute force's, its payload is the one put
    # by hand with them (each class symbol read before its window's values), and it reads back,
    # codes and classes. Forced to any other classes (every assignment up to 3 windows) the
    # frame reads back too (a receiver reads the class it is sent), as put by hand.
    import itertools
    rng = lcg(6)
    seen_classes, seen_escape_in = set(), set()
    for trial in range(400):
        windows = 1 + trial % 4
        codes = []
        for j in range(2 * windows):
            r = next(rng) % 16
            codes.append(0 if r < 5 else (next(rng) % 7) - 3 if r < 11 else
                         (-3, 3, 4, -4, 40, -300)[next(rng) % 6] if r < 15 else
                         (next(rng) % 65536) - 32768)
        values = tables.values(codes)
        chosen = [cheapest_class(tables, values, w) for w in range(windows)]
        assert chosen == classes_by_brute_force(tables, codes), codes
        payload = rans_encode(codes, tables)
        assert payload == put_by_hand(class_groups(tables, codes, chosen)), codes
        assert rans_read(payload, len(codes), tables) == (codes, chosen), codes
        seen_classes.update(chosen)
        for j, v in enumerate(values):
            table = tables.table(j, chosen[j // 2])
            if table.is_escape(min(max(v, table.lo), table.hi)):
                seen_escape_in.add(chosen[j // 2])
        for forced in (itertools.product(range(3), repeat=windows) if windows <= 3 else
                       [[(w + trial) % 3 for w in range(windows)]]):
            forced = list(forced)
            other = rans_encode(codes, tables, forced)
            assert other == put_by_hand(class_groups(tables, codes, forced))
            assert rans_read(other, len(codes), tables) == (codes, forced), (codes, forced)
            assert (other == payload) == (forced == chosen)
    # (Class 0 is never the cheapest for an escaped value: its ends have frequency 2 to 4;
    # the forced classes above code escapes in class 0 too.)
    assert seen_classes == {0, 1, 2} and seen_escape_in == {1, 2}, \
        "every class chosen, and escapes coded in classes 1 and 2"

    # A window whose cheapest class is not 0, by hand: latent 0's 0 and latent 1's 2 (window
    # 0: its own table t1). class_cost: class 0, cf 2048 (15) + t0's 0, 3980 (0) + t1's 2, 8
    # (143) = 158; class 1, cf 1536 (22) + 2936 (8) + 512 (47) = 77; class 2, cf 512 (47) +
    # 696 (41) + 600 (45) = 133: class 1.
    assert [window_cost(tables, [0, 2], 0, c) for c in range(3)] == [158, 77, 133]
    assert cheapest_class(tables, [0, 2], 0) == 1
    assert rans_read(rans_encode([0, 2], tables), 2, tables) == ([0, 2], [1])

    # A tie goes to the lower class: vector 6's END frame's window 2 (codes 0, 0 after 3: the
    # difference −3, d1's escape −2 then the distance 1) costs 125 in classes 1 and 2:
    # class 1, 22 + 8 (t0's 0, 2936) + 95 (d1's −2, 64) = 125; class 2, 47 + 41 (696) + 37
    # (d1's −2, 800) = 125: class 1 (exactly, 7.895 bits against class 2's 7.913).
    codes = [2, -3, -3, 3, 0, 0]
    assert tables.values(codes)[4:] == [0, -3]
    assert [window_cost(tables, tables.values(codes), 2, c) for c in range(3)] == [174, 125, 125]
    assert classes_by_brute_force(tables, codes)[2] == cheapest_class(
        tables, tables.values(codes), 2) == 1
    exact = [-math.log2(tables.classes.freqs[c] / 4096)
             - math.log2(tables.table(4, c).f(0) / 4096)
             - math.log2(tables.table(5, c).f(-2) / 4096) for c in (1, 2)]
    assert 7.89 < exact[0] < 7.90 < 7.91 < exact[1] < 7.92, exact
    # Two more ties: mirrored tables with equal class frequencies (class 0: latent 0's table
    # A likes −1 and 2, latent 1's Ā, A mirrored, likes 1 and −2; class 1 the other way round)
    # tie on −1, −1 and on 1, 1 (one latent liked by each class); and class_cost's rounding
    # ties two frequencies (4000 and 4050, both 0) that differ in exact bits (class 1 is
    # exactly cheaper): class 0 all three times, and class 1, forced, reads back as class 1.
    a, mirror = [16, 2032, 16, 16, 2016], [2016, 16, 16, 2032, 16]
    mirrored = TableSet([[Table(-2, a), Table(-2, mirror)], [Table(-2, mirror), Table(-2, a)]],
                        classes=[2048, 2048])
    rounded = TableSet([[Table(-1, [48, 4000, 48])], [Table(-1, [23, 4050, 23])]],
                       classes=[2048, 2048])
    assert class_cost(4000) == class_cost(4050) == 0 and math.log2(4050) > math.log2(4000)
    for ts, codes in ((mirrored, [-1, -1]), (mirrored, [1, 1]), (rounded, [0])):
        values = ts.values(codes)
        assert window_cost(ts, values, 0, 0) == window_cost(ts, values, 0, 1)
        assert cheapest_class(ts, values, 0) == 0 == classes_by_brute_force(ts, codes)[0]
        payload = rans_encode(codes, ts)
        assert payload == put_by_hand(class_groups(ts, codes, [0]))
        assert rans_read(payload, len(codes), ts) == (codes, [0])
        forced = rans_encode(codes, ts, [1])
        assert forced != payload and rans_read(forced, len(codes), ts) == (codes, [1])

    # The class symbol comes before the window's values in reading order (after them in the
    # encoder's): put by hand after them instead (or left out), the payload differs and does
    # not read back as the frame.
    codes = [0, 3, 1, 2, -2, 1, 40, 0]
    chosen = [1, 1, 2, 2]
    groups = class_groups(tables, codes, chosen)
    assert rans_encode(codes, tables) == put_by_hand(groups)
    after = []
    for w in range(4):
        window = groups[3 * w:3 * w + 3]
        after += window[1:] + window[:1]
    assert put_by_hand(after) != put_by_hand(groups)
    assert rans_read(put_by_hand(after), 8, tables) != (codes, chosen)
    assert rans_read(put_by_hand([g for i, g in enumerate(groups) if i % 3]), 8, tables) != \
        (codes, chosen)

    # Prediction with classes: a predicted value is coded with its own window's class's
    # difference table, whatever the class of the window it is predicted from; window 0's
    # latent 1 with its own table t1 of window 0's class.
    assert [tables.table(j, c) for j, c in zip(range(8), [1, 1, 1, 1, 2, 2, 2, 2])] == \
        [tables.latent(0, 1), tables.latent(1, 1), tables.latent(0, 1), tables.difference(1, 1),
         tables.latent(0, 2), tables.difference(1, 2), tables.latent(0, 2),
         tables.difference(1, 2)]

    # Forged: a classed window's escape followed by a distance past the i16 range is refused;
    # an empty payload (state 0, q = 0 throughout) reads class 0 and each table's lo (an
    # escape, then the distance 0): values −3, −3 | −3, −2, codes −3, −3, −3, −5; a payload
    # with one class symbol too many (a word left over or a state not at 0) is refused.
    for c in range(3):
        for end in (tables.latent(0, c).lo, tables.latent(0, c).hi):
            groups = [[tables.classes.sym(c)], [tables.latent(0, c).sym(end)] +
                      [dist_sym(u) for u in (255, 0xFF, 0xFF)], [tables.latent(1, c).sym(0)]]
            assert rans_read(put_by_hand(groups), 2, tables) is None, (c, end)
    assert rans_read(b"", 4, tables) == ([-3, -3, -3, -5], [0, 0])
    payload = rans_encode([0, 0, 0, 0], tables)
    assert rans_read(payload, 4, tables) == ([0, 0, 0, 0], [0, 0])
    assert rans_read(put_by_hand(class_groups(tables, [0, 0, 0, 0], [0, 0]) +
                                 [[tables.classes.sym(2)]]), 4, tables) is None

    # Without classes nothing changes: no class symbol is sent (vectors 3 and 4 are
    # unchanged); one class's tables of a classed set code as that class, less the symbols.
    plain = TableSet(tables.by_class[1], lags=[0, 1])
    codes = [0, 3, 1, 2, -2, 1, 40, 0]
    assert rans_read(rans_encode(codes, plain), 8, plain) == (codes, [])
    assert rans_encode(codes, plain) == put_by_hand(
        [g for g in class_groups(tables, codes, [1] * 4) if g != [tables.classes.sym(1)]])


def golden_6(report=None):
    common = dict(stream_id=5, session=0x0708)
    # Three window classes (cf 2048, 1536, 512), lags [0, 1] (latent 1 predicted from the
    # window before): each class has latent 0's table -3 ..= 3, latent 1's -3 ..= 3 and latent
    # 1's difference table -2 ..= 2. Class 0 quiet (almost all on 0), class 1 a drifting latent
    # 1 (its differences ±1 likely), class 2 busy (spread).
    tables = TableSet([
        [Table(-3, [2, 8, 48, 3980, 48, 8, 2]),
         Table(-3, [2, 8, 48, 3980, 48, 8, 2]),
         Table(-2, [4, 64, 3960, 64, 4])],
        [Table(-3, [4, 64, 512, 2936, 512, 64, 4]),
         Table(-3, [256, 512, 768, 1024, 768, 512, 256]),
         Table(-2, [64, 1536, 896, 1536, 64])],
        [Table(-3, [400, 600, 700, 696, 700, 600, 400]),
         Table(-3, [400, 600, 700, 696, 700, 600, 400]),
         Table(-2, [800, 800, 896, 800, 800])],
    ], lags=[0, 1], classes=[2048, 1536, 512])
    check_classes(tables)
    (q0, q1, qd), (r0, r1, rd), (b0, b1, bd) = tables.by_class
    cs = tables.classes.sym
    # (codes, frame_flags, the spec's bullet: coded?), and the classes the spec gives the
    # windows.
    frames = [
        ([0, 0, 0, 0, 0, 1, 0, 2], 0, True),
        ([0, 3, 1, 2, -2, 1, 40, 0], SATURATED, True),
    ]
    # Frame 2, the last (END): 70 samples, so m = 3 windows (the third holds 6 samples and 26
    # of padding), 6 codes, coded.
    last = ([2, -3, -3, 3, 0, 0], 70, 0, True)
    classes = [[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 1]]

    # Frame 0: values 0, 0 | 0, 0 | 0, 1 | 0, 1 (latent 1's differences from window 1 on);
    # windows 0 and 1 quiet (class 0), 2 and 3 class 1 (d1's 1: 1536 against 64).
    # Frame 1: values 0, 3 | 1, −1 | −2, −1 | 40, −1; windows 0 and 1 class 1 (latent 1's 3 is
    # t1's escape 3, then the distance 0), 2 and 3 class 2 (latent 0's 40 is t0's escape 3,
    # then the distance 37).
    # Frame 2 (END): values 2, −3 | −3, 6 | 0, −3; windows 0 and 1 class 2 (latent 1's −3 is
    # t1's escape −3 + distance 0, latent 0's −3 t0's escape −3 + distance 0, the difference
    # 6 d1's escape 2 + distance 4); window 2 class 1, tied with class 2 (the difference −3:
    # d1's escape −2 + distance 1).
    by_hand = [
        [[cs(0)], [q0.sym(0)], [q1.sym(0)], [cs(0)], [q0.sym(0)], [qd.sym(0)],
         [cs(1)], [r0.sym(0)], [rd.sym(1)], [cs(1)], [r0.sym(0)], [rd.sym(1)]],
        [[cs(1)], [r0.sym(0)], [r1.sym(3), dist_sym(0)], [cs(1)], [r0.sym(1)], [rd.sym(-1)],
         [cs(2)], [b0.sym(-2)], [bd.sym(-1)], [cs(2)], [b0.sym(3), dist_sym(37)], [bd.sym(-1)]],
        [[cs(2)], [b0.sym(2)], [b1.sym(-3), dist_sym(0)],
         [cs(2)], [b0.sym(-3), dist_sym(0)], [bd.sym(2), dist_sym(4)],
         [cs(1)], [r0.sym(0)], [rd.sym(-2), dist_sym(1)]],
    ]
    assert [tables.values(c) for c, *_ in frames + [last]] == [
        [0, 0, 0, 0, 0, 1, 0, 1], [0, 3, 1, -1, -2, -1, 40, -1], [2, -3, -3, 6, 0, -3]]
    for (codes, *_), want, groups in zip(frames + [last], classes, by_hand):
        values = tables.values(codes)
        assert [cheapest_class(tables, values, w) for w in range(len(want))] == want
        assert classes_by_brute_force(tables, codes) == want
        assert groups == class_groups(tables, codes, want)
        payload = put_by_hand(groups)
        assert rans_encode(codes, tables) == payload
        assert rans_read(payload, len(codes), tables) == (codes, want)
    assert set(sum(classes, [])) == {0, 1, 2}, "every class taken"
    # The tie of frame 2's window 2: classes 1 and 2 cost the same (check_classes).
    assert [window_cost(tables, tables.values(last[0]), 2, c) for c in range(3)] == \
        [174, 125, 125]

    window, windows_per_frame, header_interval = 32, 4, 64
    codes, samples, flags, _ = last
    m = windows_of(samples, window)
    assert m == 3 and len(codes) == m * 2
    assert samples - (m - 1) * window == 6 and m * window - samples == 26, "6 + 26 padding"
    items = [header(flags=RESTART | ENTROPY_CODED, model_id=MODEL_ID, channels=1,
                    codes_per_window=2, window=window, windows_per_frame=windows_per_frame,
                    header_interval=header_interval, frame=0, start_sample=0, **common)]
    # Frames 0 and 1, then frame 2, the END frame; no header before it.
    start = len(report) if report is not None else 0
    items += send_session(frames, last, tables, window, windows_per_frame, header_interval,
                          common, report)
    assert len(items) == 4 and items[3][1:4] == u24(70)
    for item, groups, size in zip(items[1:], by_hand, (1, 1, 4)):
        assert item[size:-2] == put_by_hand(groups), "every frame coded, as put by hand"
    if report is not None:
        for i, want in zip(range(start, len(report)), classes):
            *head, extra = report[i]
            report[i] = (*head, extra + f" classes={want}")
    return items


# Bounded sessions ("Bounded sessions", version 7; the adaptive stage, version 8).

MIN_BLOCK, MAX_BLOCK = 16, 64   # a segment is cut into blocks of B bins, 16 ≤ B ≤ 64
OCTAVE = 16                # a bin q with |q| < 16 is its own symbol; from 16 on, octave-coded
MAX_SYMBOL = 16 + 15 - 4   # 27: the symbol of o = 15, the largest magnitude a payload may hold
RAW_SPLIT = 8              # raw bits are symbols of at most 8 bits
MASK = (1 << PRECISION) - 1
FIXED_FRAC = 12            # a_1 … a_p: 12 fractional bits, f = (P + 2048) >> 12
ADAPTIVE_FRAC = 14         # w_1 … w_n: 14 fractional bits, g = (A + 8192) >> 14
MAX_ORDER, MAX_STEP = 16, 15   # the adaptive stage's order n (0 … 16) and step μ (0 … 15)
WEIGHT_LIMIT = 262144      # every w_j is clamped to −262 144 … 262 144 (±16 in 14 fractional bits)


def clamp16(v):
    """v clamped to −32 768 … 32 767."""
    return min(max(v, I16_MIN), I16_MAX)


def shift(v, z):
    """v << z, where << z with z < 0 is >> −z: Python's >> on a negative int is the arithmetic
    shift (rounding down, toward −∞), as the spec's >> is."""
    return v << z if z >= 0 else v >> -z


class ResidualCoder:
    """A model's residual coder ("The residual coder"): the bound E′ (0 … 32 767 counts),
    prediction coefficients a_1 … a_p (p ≤ 4, i16, 12 fractional bits), the adaptive stage's
    order n (0 … 16; 0: no adaptive stage) and step μ (0 … 15), the block length B (16 … 64),
    class bounds b_0 < … < b_{K−2} (u16, K ≤ 16 classes) and K + 1 tables: table 0 codes
    block classes, table 1 + c the symbols of the bins of class c."""

    def __init__(self, bound, coefficients, order, step, class_bounds, tables, block=32):
        assert 0 <= bound <= I16_MAX, "E′ is 0 to 32 767 counts"
        assert len(coefficients) <= 4, "p ≤ 4"
        assert all(I16_MIN <= a <= I16_MAX for a in coefficients), "coefficients are i16"
        assert isinstance(order, int) and 0 <= order <= MAX_ORDER, "n is 0 to 16"
        assert isinstance(step, int) and 0 <= step <= MAX_STEP, "μ is 0 to 15"
        self.order, self.step = order, step
        assert isinstance(block, int) and MIN_BLOCK <= block <= MAX_BLOCK, "B is 16 to 64"
        self.block = block
        assert all(0 <= b <= 0xFFFF for b in class_bounds), "class bounds are u16"
        assert all(a < b for a, b in zip(class_bounds, class_bounds[1:])), "b_0 < b_1 < …"
        self.bound, self.coefficients = bound, list(coefficients)
        self.class_bounds = list(class_bounds)
        self.K = len(class_bounds) + 1
        assert self.K <= 16, "K ≤ 16 classes"
        assert len(tables) == self.K + 1 and all(isinstance(t, Table) for t in tables)
        self.tables = list(tables)

    def class_table(self):
        return self.tables[0]

    def bin_table(self, c):
        assert 0 <= c < self.K
        return self.tables[1 + c]

    def fixed(self, history):
        """The fixed prediction f = (P + 2048) >> 12 with P = a_1·h_1 + … + a_p·h_p (exact),
        history [h_1, h_2, h_3, h_4]; not clamped (p clamps f + g). Python's >> on a negative
        int is the arithmetic shift (floor)."""
        assert len(history) == 4
        big_p = sum(a * h for a, h in zip(self.coefficients, history))
        return (big_p + (1 << (FIXED_FRAC - 1))) >> FIXED_FRAC

    def sample(self, p, q):
        """The rebuilt sample x of a bin q under the prediction p."""
        if self.bound == 0:
            return wrap16(p + q)
        return clamp16(p + q * (2 * self.bound + 1))

    def bin(self, s, p):
        """The sender's bin q of its sample s under the prediction p."""
        assert I16_MIN <= s <= I16_MAX, "samples are i16"
        if self.bound == 0:
            return wrap16(s - p)
        d = s - p
        sign = (d > 0) - (d < 0)
        return sign * ((abs(d) + self.bound) // (2 * self.bound + 1))

    def level_class(self, bins):
        """The class the blocks' level ⌊16 · Σ|q| / n⌋ puts a block in (where the coder's fit
        started its classes: the number of class bounds below the level; also checked against
        the other wording, the first c with level ≤ b_c, or K − 1). Not the sender's rule."""
        level = (16 * sum(abs(q) for q in bins)) // len(bins)
        c = sum(1 for b in self.class_bounds if b < level)
        assert c == next((i for i, b in enumerate(self.class_bounds) if level <= b), self.K - 1)
        return c

    def block_cost(self, bins, c):
        """What a block's class symbol c (table 0) and its bins' symbols (table 1 + c) cost by
        class_cost, each escaped symbol's distance 8 bits (128 sixteenths) per distance symbol;
        the raw bits are left out (the same in every class)."""
        def cost(v, table):
            t = min(max(v, table.lo), table.hi)
            escaped = len(distance_symbols(abs(v - t))) if table.is_escape(t) else 0
            return class_cost(table.f(t)) + 128 * escaped
        return cost(c, self.class_table()) + sum(cost(bin_symbol(q)[0], self.bin_table(c)) for q in bins)

    def block_class(self, bins):
        """The class Funnel's sender takes for a block ("Blocks"): the smallest block_cost,
        the lowest class on a tie."""
        return min(range(self.K), key=lambda c: (self.block_cost(bins, c), c))


class Segment:
    """The state one segment is rebuilt with ("Rebuilding"), from an empty state: the history
    h = [h_1 … h_4] = 0 (h_1 the most recent) and, for the adaptive stage of order n, its
    weights w = [w_1 … w_n] = 0 (14 fractional bits) and its own history gs = [g_1 … g_n] = 0.
    adaptive: the segment's bit α ("Adapting or not"); False (α = 0) rebuilds the segment as
    if n = 0 (self.order is then 0), True (α = 1, or no bit when n = 0) runs the stage of
    order n. Per sample: predict() gives p (and keeps f and g, the fixed and adaptive
    predictions), then push(x) with the sample x rebuilt under p: the adaptive stage learns
    from x with the g_j the prediction used, then its history and h move on. Every value is an
    exact (Python) int; `widest` is the largest bit length of the magnitude of an intermediate
    result, `hits` counts how often each clamp (and a negative shift z) took effect."""

    def __init__(self, coder, adaptive=True):
        self.coder = coder
        self.order = coder.order if adaptive else 0
        self.h = [0, 0, 0, 0]
        self.w = [0] * self.order
        self.gs = [0] * self.order
        self.f = self.g = None  # set by predict(), used by push()
        self.widest = 0
        self.hits = dict(p=0, u=0, w=0, g1=0, negative_z=0)

    def _note(self, *values):
        self.widest = max([self.widest] + [abs(v).bit_length() for v in values])

    def predict(self, b=0):
        """p = clamp(b + f + g): f = (P + 2048) >> 12 the fixed prediction, g = (A + 8192) >> 14
        the adaptive one, A = w_1·g_1 + … + w_n·g_n (0 when n = 0); b the sample's base (the
        integer decoder's rebuild, "With latent codes"; 0 without latent codes)."""
        assert self.f is None, "one predict() per push()"
        big_p = sum(a * h for a, h in zip(self.coder.coefficients, self.h))
        self.f = (big_p + (1 << (FIXED_FRAC - 1))) >> FIXED_FRAC
        assert self.f == self.coder.fixed(self.h)
        big_a = sum(w * g for w, g in zip(self.w, self.gs))
        self.g = (big_a + (1 << (ADAPTIVE_FRAC - 1))) >> ADAPTIVE_FRAC
        p = clamp16(b + self.f + self.g)
        self.hits["p"] += p != b + self.f + self.g
        self._note(big_p, self.f, big_a, self.g, self.f + self.g)
        return p

    def push(self, x, b=0):
        """push_residual(x − b): the state holds residuals from the base b ("With latent
        codes": h_1 = x − b, g_1 = clamp(x − b − f), u = clamp(x − b − f − g))."""
        assert I16_MIN <= x <= I16_MAX, "a rebuilt sample is i16"
        self.push_residual(x - b)

    def push_residual(self, x):
        """The sample x rebuilt under the last prediction enters the state. If the stage runs
        (n ≥ 1 and α = 1): S = 1 + g_1² + … + g_n², k = ⌊log2 S⌋, z = 14 − k − μ,
        u = clamp(x − f − g); every w_j = clamp(w_j + ((u·g_j) << z), ±262 144) with the g_j
        the prediction used; then g_n = g_{n−1}; …; g_1 = clamp(x − f) (f and g unclamped).
        Then h_4 = h_3; …; h_1 = x."""
        assert self.f is not None, "push() follows predict()"
        f, g = self.f, self.g
        if self.order >= 1:
            big_s = 1 + sum(gj * gj for gj in self.gs)
            k = big_s.bit_length() - 1          # ⌊log2 S⌋, S ≥ 1
            assert 1 << k <= big_s < 2 << k
            z = ADAPTIVE_FRAC - k - self.coder.step
            self.hits["negative_z"] += z < 0
            u = clamp16(x - f - g)
            self.hits["u"] += u != x - f - g
            new_w = []
            for wj, gj in zip(self.w, self.gs):
                delta = shift(u * gj, z)       # (u·g_j) << z: the product, then the shift
                wide = wj + delta
                new_w.append(min(max(wide, -WEIGHT_LIMIT), WEIGHT_LIMIT))
                self.hits["w"] += new_w[-1] != wide
                self._note(u * gj, delta, wide)
            self.w = new_w
            g1 = clamp16(x - f)
            self.hits["g1"] += g1 != x - f
            self.gs = [g1] + self.gs[:-1]
            self._note(big_s, x - f - g, x - f)
        self.h = [x] + self.h[:3]
        self.f = self.g = None


def segment_bins(samples, coder, state=None, adaptive=True, base=None):
    """The sender's closed loop over one segment (one channel's m samples, from an empty
    state): for each sample, p from the state of *rebuilt* samples (the same p a receiver
    computes), its bin q, and the sample x a receiver rebuilds, which enters the state (the
    fixed history and the adaptive stage's). adaptive: α (False: as if n = 0). Returns (bins,
    rebuilt). state: a fresh Segment to use (to inspect it afterwards). base: the segment's
    bases b_t ("With latent codes"; None: all 0)."""
    state = Segment(coder, adaptive) if state is None else state
    assert state.order == (coder.order if adaptive else 0) and not state.widest
    base = [0] * len(samples) if base is None else base
    assert len(base) == len(samples)
    bins, rebuilt = [], []
    for s, b in zip(samples, base):
        p = state.predict(b)
        q = coder.bin(s, p)
        x = coder.sample(p, q)
        bins.append(q)
        rebuilt.append(x)
        state.push(x, b)
    return bins, rebuilt


def segment_samples(bins, coder, state=None, adaptive=True, base=None):
    """The receiver's rebuilding of one segment from its bins ("Rebuilding"), from an empty
    state; adaptive: the segment's α (False: as if n = 0); base: its bases (None: all 0)."""
    state = Segment(coder, adaptive) if state is None else state
    assert state.order == (coder.order if adaptive else 0) and not state.widest
    base = [0] * len(bins) if base is None else base
    assert len(base) == len(bins)
    rebuilt = []
    for q, b in zip(bins, base):
        x = coder.sample(state.predict(b), q)
        rebuilt.append(x)
        state.push(x, b)
    return rebuilt


def adapts(alpha):
    """Whether a segment runs the adaptive stage: α = 1, or no bit (None: n = 0, no stage to
    run either way)."""
    assert alpha in (None, 0, 1)
    return alpha != 0


def choose_alpha(samples, coder, base=None):
    """The sender's bit α of one segment ("Adapting or not"): none when n = 0; otherwise the
    segment coded both ways, each from the empty state (α = 1 with the adaptive stage, α = 0 as
    if n = 0), and α = 1 only when the sum of |q| over its bins is then strictly smaller (a tie
    is α = 0). Returns (α, bins, rebuilt) of the way chosen."""
    if coder.order == 0:
        return (None,) + segment_bins(samples, coder, base=base)
    with_stage = segment_bins(samples, coder, adaptive=True, base=base)
    without = segment_bins(samples, coder, adaptive=False, base=base)
    if sum(abs(q) for q in with_stage[0]) < sum(abs(q) for q in without[0]):
        return (1,) + with_stage
    return (0,) + without


def bin_symbol(q):
    """A bin's symbol and its raw bits, as (k, v) groups of k bits in reading order: |q| < 16:
    the symbol q, no raw bits; else o = ⌊log2 |q|⌋, the symbol ±(16 + o − 4) with the sign of
    q, and the o bits r = |q| − 2^o: one group when o ≤ 8, else r >> 8 (o − 8 bits), then
    r & 0xFF (8 bits)."""
    assert I16_MIN <= q <= I16_MAX, "bins are i16"
    a = abs(q)
    if a < OCTAVE:
        return q, []
    o = a.bit_length() - 1
    assert 4 <= o <= 15 and 1 << o <= a < 2 << o
    r = a - (1 << o)
    symbol = 16 + o - 4
    raw = [(o, r)] if o <= RAW_SPLIT else [(o - RAW_SPLIT, r >> 8), (RAW_SPLIT, r & 0xFF)]
    return (-symbol if q < 0 else symbol), raw


def raw_sym(k, v):
    """The symbol (f, c) of k ≤ 8 raw bits of value v: f = 2^(12−k), c = v · 2^(12−k)."""
    assert 1 <= k <= RAW_SPLIT and 0 <= v < 1 << k
    f = 1 << (PRECISION - k)
    return f, v * f


def blocks(n, size):
    """The (start, length) of the blocks of a segment of n bins: size each, the last shorter."""
    return [(start, min(size, n - start)) for start in range(0, n, size)]


def residual_groups(segments, coder, alphas=None):
    """The values coded, in reading order, as groups of symbols (f, c): for each segment
    (channel 0 first), its bit α when n ≥ 1 (a raw-bit symbol of k = 1), then for each block,
    its class c with table 0 (with its escape's distance, if any), then for each bin its
    symbol with table 1 + c (with its escape's distance, if any), followed by the bin's raw
    bits. alphas: one α per segment when n ≥ 1; None (or all None) when n = 0."""
    if alphas is None:
        alphas = [None] * len(segments)
    assert len(alphas) == len(segments)
    assert all((a is None) if coder.order == 0 else a in (0, 1) for a in alphas), \
        "one bit α per segment exactly when n ≥ 1"
    groups = []
    for bins, alpha in zip(segments, alphas):
        if coder.order >= 1:
            groups.append([raw_sym(1, alpha)])
        for start, n in blocks(len(bins), coder.block):
            block = bins[start:start + n]
            c = coder.block_class(block)
            groups.append(symbols_of(c, coder.class_table()))
            table = coder.bin_table(c)
            for q in block:
                symbol, raw = bin_symbol(q)
                groups.append(symbols_of(symbol, table) + [raw_sym(k, v) for k, v in raw])
    return groups


def residual_encode(segments, coder, alphas=None) -> bytes:
    """The residual-coded payload of a frame's bins (one list per channel) and, when n ≥ 1,
    each segment's α: the symbols put in reverse reading order from state 0 by the rANS coder
    of "The entropy coder"."""
    return put_by_hand(residual_groups(segments, coder, alphas))


class WordReader:
    """The decoder's side of the rANS coder ("The entropy coder"), one symbol at a time: words
    read from the end of the payload; an empty payload starts at state 0, otherwise its length
    must be even and its last word not 0 (valid is False otherwise)."""

    def __init__(self, payload):
        self.valid = len(payload) % 2 == 0
        words = list(struct.unpack(f"<{len(payload) // 2}H", payload)) if self.valid else []
        self.s = words.pop() if words else 0
        if payload and self.s == 0:
            self.valid = False
        if words:
            self.s = (self.s << 16) | words.pop()
        self.words = words

    def _read(self, f, c, q):
        self.s = (self.s >> PRECISION) * f + q - c
        if self.s < 1 << 16 and self.words:
            self.s = (self.s << 16) | self.words.pop()

    def _distance_symbol(self):
        q = self.s & MASK
        u = q >> 4
        self._read(*dist_sym(u), q)
        return u

    def value(self, table):
        """A value coded with table: its symbol t, and when t is an escape its distance; None
        when the value lies outside the i16 range."""
        q = self.s & MASK
        t = table.code_at(q)
        self._read(*table.sym(t), q)
        if not table.is_escape(t):
            return t
        d = self._distance_symbol()
        if d == 255:
            high = self._distance_symbol()
            low = self._distance_symbol()
            d = 255 + (high << 8) + low
        v = table.lo - d if t == table.lo else table.hi + d
        return v if I16_MIN <= v <= I16_MAX else None

    def raw(self, k):
        """k raw bits: v = q >> (12 − k), read with f = 2^(12−k), c = v · 2^(12−k)."""
        q = self.s & MASK
        v = q >> (PRECISION - k)
        self._read(*raw_sym(k, v), q)
        return v


def residual_decode(payload, m, channels, coder, why=None):
    """(alphas, segments) of a residual-coded payload, read first to last: each segment's α
    (None when n = 0: no bit) and its bins (one list per channel, m each); or None if the
    payload is not valid: an odd length or a zero last word, a value outside the i16 range, a
    class not in 0 … K − 1, a symbol of magnitude above 27, a bin outside the i16 range, a word
    left unread or the state not ending at 0 (α, one raw bit, is 0 or 1 whatever the payload).
    why, a list, gets the reason."""
    def refuse(reason):
        if why is not None:
            why.append(reason)
        return None

    reader = WordReader(payload)
    if not reader.valid:
        return refuse("length")
    return read_residuals(reader, m, channels, coder, refuse)


def read_residuals(reader, m, channels, coder, refuse):
    """residual_decode's reading from a WordReader at the residual values (the payload's
    start, or after the latent codes): (alphas, segments), or refuse(reason)."""
    alphas, segments = [], []
    for _ in range(channels):
        alphas.append(reader.raw(1) if coder.order >= 1 else None)
        bins = []
        for _, n in blocks(m, coder.block):
            c = reader.value(coder.class_table())
            if c is None:
                return refuse("value")
            if not 0 <= c < coder.K:
                return refuse("class")
            table = coder.bin_table(c)
            for _ in range(n):
                symbol = reader.value(table)
                if symbol is None:
                    return refuse("value")
                if abs(symbol) > MAX_SYMBOL:
                    return refuse("symbol")
                if abs(symbol) < OCTAVE:
                    q = symbol
                else:
                    o = abs(symbol) - 16 + 4
                    if o <= RAW_SPLIT:
                        r = reader.raw(o)
                    else:
                        high = reader.raw(o - RAW_SPLIT)
                        r = (high << 8) | reader.raw(RAW_SPLIT)
                    q = (1 << o) + r
                    q = -q if symbol < 0 else q
                    if not I16_MIN <= q <= I16_MAX:
                        return refuse("bin")
                bins.append(q)
        segments.append(bins)
    if reader.words:
        return refuse("words")
    if reader.s != 0:
        return refuse("state")
    return alphas, segments


def i16_samples(channels) -> bytes:
    """A bounded frame's raw payload: the samples as i16 LE, channel after channel."""
    return i16_codes([x for channel in channels for x in channel])


def decode_bounded_payload(payload, m, channels, coder):
    """The samples a receiver rebuilds from a bounded payload (or a last frame's body) of
    N = m × C samples: 2N bytes, raw i16, channel after channel; fewer, residual coded; more,
    not valid (None)."""
    n = m * channels
    if len(payload) == 2 * n:
        flat = list(struct.unpack(f"<{n}h", payload))
        return [flat[i * m:(i + 1) * m] for i in range(channels)]
    if len(payload) > 2 * n:
        return None
    read = residual_decode(payload, m, channels, coder)
    if read is None:
        return None
    alphas, segments = read
    return [segment_samples(b, coder, adaptive=adapts(a)) for a, b in zip(alphas, segments)]


def saturated(channels):
    """SATURATED in a bounded session: one of the frame's samples is −32768 or 32767."""
    return any(x in (I16_MIN, I16_MAX) for channel in channels for x in channel)


def bounded_payload(channels, coder):
    """The sender's payload for a frame's samples (one list per channel, m each): each segment
    coded as the sender's α chooses (choose_alpha; no α when n = 0), the residual coded payload
    when it is shorter than 2N bytes, else the raw samples *as a receiver of the coded form
    would rebuild them* (under the α chosen). Self-checks: the coded payload decodes back to
    the α bits and the bins, and rebuilds samples within E′ of the inputs. Returns (payload,
    sent coded?, coded length, rebuilt samples, bins, alphas)."""
    m, count = len(channels[0]), len(channels)
    assert m >= 1 and all(len(channel) == m for channel in channels)
    loops = [choose_alpha(channel, coder) for channel in channels]
    alphas = [a for a, _, _ in loops]
    bins = [b for _, b, _ in loops]
    rebuilt = [x for _, _, x in loops]
    for channel, xs in zip(channels, rebuilt):
        assert all(abs(s - x) <= coder.bound for s, x in zip(channel, xs)), "within E′"
    coded = residual_encode(bins, coder, alphas)
    assert residual_decode(coded, m, count, coder) == (alphas, bins), "decode(encode) == (α, bins)"
    assert decode_bounded_payload(coded, m, count, coder) == rebuilt or len(coded) >= 2 * m * count
    assert [segment_samples(b, coder, adaptive=adapts(a)) for a, b in zip(alphas, bins)] == \
        rebuilt, "receiver = sender's loop"
    sent_coded = len(coded) < 2 * m * count
    payload = coded if sent_coded else i16_samples(rebuilt)
    back = decode_bounded_payload(payload, m, count, coder)
    assert back == rebuilt, "a receiver rebuilds the sender's rebuilt samples"
    for channel, xs in zip(channels, back):
        assert all(abs(s - x) <= coder.bound for s, x in zip(channel, xs)), "within E′"
    return payload, sent_coded, len(coded), rebuilt, bins, alphas


def bounded_frame(channels, coder, stream_id, session, frame, frame_flags):
    """A bounded session's frame: len (1 or 2) ‖ payload ‖ check, N = m × C, len ≤ 2N. Returns
    (the frame's bytes, sent coded?, coded length, rebuilt samples, bins, alphas)."""
    m, count = len(channels[0]), len(channels)
    payload, sent_coded, coded_len, rebuilt, bins, alphas = bounded_payload(channels, coder)
    item = entropy_frame_bytes(payload, stream_id, session, frame, frame_flags)
    read = read_entropy_frame(item, m * count, stream_id, session, frame, frame_flags)
    assert read is not None and read[1] == len(item), "the frame reads back"
    assert decode_bounded_payload(read[0], m, count, coder) == rebuilt
    return item, sent_coded, coded_len, rebuilt, bins, alphas


def bounded_end_frame(channels, coder, window, windows_per_frame, stream_id, session, frame,
                      frame_flags):
    """A bounded session's last frame: len ‖ samples (u24) ‖ body ‖ check, END set, the body
    covering exactly `samples` per channel (no padding), 1 ≤ samples ≤ windows_per_frame ×
    window. Returns what bounded_frame returns."""
    samples, count = len(channels[0]), len(channels)
    assert 1 <= samples <= windows_per_frame * window
    body, sent_coded, coded_len, rebuilt, bins, alphas = bounded_payload(channels, coder)
    item = entropy_frame_bytes(u24(samples) + body, stream_id, session, frame, frame_flags | END)
    read = read_bounded_end_frame(item, window, windows_per_frame, count, stream_id, session,
                                  frame, frame_flags | END)
    assert read == (samples, body, len(item)), "the END frame reads back"
    assert decode_bounded_payload(read[1], samples, count, coder) == rebuilt
    assert read_entropy_frame(item, windows_per_frame * window * count, stream_id, session,
                              frame, frame_flags & ~END) is None, "not without the END flag"
    return item, sent_coded, coded_len, rebuilt, bins, alphas


def read_bounded_end_frame(buf, window, windows_per_frame, channels, stream_id, session, frame,
                           frame_flags):
    """A receiver's reading of a bounded last frame under one candidate (END set): (samples,
    body, the frame's size), or None: len above 2N + 3 (N of a whole frame) or below 3, cut
    off, the check fails, or samples is 0 or above windows_per_frame × window. The body is
    read by decode_bounded_payload with m = samples (above 2N′ bytes it is not valid)."""
    assert frame_flags & END
    read = read_entropy_frame(buf, windows_per_frame * window * channels, stream_id, session,
                              frame, frame_flags)
    if read is None:
        return None
    payload, size = read
    if len(payload) < SAMPLES_SIZE:
        return None
    samples = int.from_bytes(payload[:SAMPLES_SIZE], "little")
    if not 1 <= samples <= windows_per_frame * window:
        return None
    return samples, payload[SAMPLES_SIZE:], size


def lcg(seed):
    """A deterministic random-ish sequence of 31-bit numbers (no dependence on `random`)."""
    while True:
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        yield seed


def signal(rng, m):
    """A random-ish i16 segment: slopes, jumps, noise, and runs at the ends of the i16 range."""
    x, out = 0, []
    for t in range(m):
        kind = next(rng) % 8
        if kind == 0:
            x = (I16_MIN, I16_MAX)[next(rng) % 2]
        elif kind == 1:
            x = (next(rng) % 65536) - 32768
        elif kind <= 4:
            x = clamp16(x + (next(rng) % 41) - 20)
        else:
            x = clamp16(x + (next(rng) % 2001) - 1000)
        out.append(x)
    return out


def check_bounded(coder):
    """The self-checks of bounded sessions (see the module's docstring), on vector 5's coder
    (E′ = 2, prediction [6144, −2048], adaptive stage n = 3, μ = 1, class bounds [16])."""
    t0, t1, t2 = coder.tables
    assert coder.K == 2 and coder.bound == 2 and (coder.order, coder.step) == (3, 1)

    # Symbols and raw bits, by hand.
    for q, want in ((0, (0, [])), (15, (15, [])), (-15, (-15, [])), (16, (16, [(4, 0)])),
                    (-17, (-16, [(4, 1)])), (31, (16, [(4, 15)])), (32, (17, [(5, 0)])),
                    (255, (19, [(7, 127)])), (256, (20, [(8, 0)])), (300, (20, [(8, 44)])),
                    (-511, (-20, [(8, 255)])), (512, (21, [(1, 0), (8, 0)])),
                    (-1000, (-21, [(1, 1), (8, 232)])), (6553, (24, [(4, 9), (8, 153)])),
                    (I16_MAX, (26, [(6, 63), (8, 255)])), (I16_MIN, (-27, [(7, 0), (8, 0)]))):
        assert bin_symbol(q) == want, (q, bin_symbol(q))
    assert raw_sym(1, 1) == (2048, 2048) and raw_sym(4, 15) == (256, 3840)
    assert raw_sym(8, 232) == (16, 3712) and raw_sym(7, 127) == (32, 4064)
    assert blocks(1, 32) == [(0, 1)] and blocks(32, 32) == [(0, 32)] and blocks(65, 32) == \
        [(0, 32), (32, 32), (64, 1)] and blocks(40, 16) == [(0, 16), (16, 16), (32, 8)]

    # Prediction and bins, by hand: 1.5 × 100 = 150; −1.5 × 100 = −150 (−149.5 rounded down
    # by the arithmetic shift; a division truncating toward 0 would give −149); clamped at
    # the ends (f itself is not: 1.5 × 32767 + 0.5 × 32768 = 65534.5, f = 65535); E′ = 2:
    # bins 5 counts wide, centred. With the weights still 0 (a segment's start) g = 0 and
    # p = clamp(f).
    def first_p(history):
        state = Segment(coder)
        state.h = list(history)
        p = state.predict()
        assert state.g == 0 and p == clamp16(state.f) and state.f == coder.fixed(history)
        return p

    assert first_p([100, 0, 0, 0]) == 150 and first_p([-100, 0, 0, 0]) == -150
    assert first_p([-1, 0, 0, 0]) == -1 and first_p([1, 0, 0, 0]) == 2
    assert coder.fixed([I16_MAX, I16_MIN, 0, 0]) == 65535
    assert coder.fixed([I16_MIN, I16_MAX, 0, 0]) == -65535
    assert first_p([I16_MAX, I16_MIN, 0, 0]) == I16_MAX
    assert first_p([I16_MIN, I16_MAX, 0, 0]) == I16_MIN
    assert [coder.bin(s, 0) for s in (-3, -2, 0, 2, 3, 7, 8, 100)] == [-1, 0, 0, 0, 1, 1, 2, 20]
    assert coder.sample(150, -10) == 100 and coder.sample(32760, 3) == I16_MAX
    lossless = ResidualCoder(0, coder.coefficients, coder.order, coder.step, coder.class_bounds,
                             coder.tables)
    assert lossless.bin(I16_MIN, I16_MAX) == 1 and lossless.sample(I16_MAX, 1) == I16_MIN
    assert lossless.bin(I16_MAX, I16_MIN) == -1 and lossless.sample(I16_MIN, -1) == I16_MAX
    assert lossless.bin(I16_MIN, 0) == I16_MIN and lossless.sample(0, I16_MIN) == I16_MIN

    # The encoder against payloads put by hand. One channel, samples [100, 102]: p = 0, bin
    # 20 (rebuilt 100), then p = 150, bin −10 (rebuilt 100); level ⌊16 · 30 / 2⌋ = 240 > 16:
    # class 1; bin 20 is the symbol 16 (o = 4) then 4 raw bits of value 4. (The adaptive stage
    # predicts 0 for both: its weights are 0 before the second sample, having learnt from
    # g_1 = 0 only; check_adaptive works its later steps.) n = 3 ≥ 1: the segment's values
    # begin with its bit α, a raw-bit symbol of k = 1 (f = 2048, c = 2048 α); both ways give
    # the same bins (Σ|q| = 30 each), a tie: α = 0.
    bins, rebuilt = segment_bins([100, 102], coder)
    assert (bins, rebuilt) == ([20, -10], [100, 100])
    assert segment_bins([100, 102], coder, adaptive=False) == (bins, rebuilt)
    assert choose_alpha([100, 102], coder) == (0, bins, rebuilt), "a tie is α = 0"
    assert raw_sym(1, 0) == (2048, 0) and raw_sym(1, 1) == (2048, 2048)
    one = [[t0.sym(1)], [t2.sym(16), raw_sym(4, 4)], [t2.sym(-10)]]
    for alpha in (0, 1):
        assert residual_encode([bins], coder, [alpha]) == put_by_hand([[raw_sym(1, alpha)]] + one)
        assert residual_decode(put_by_hand([[raw_sym(1, alpha)]] + one), 2, 1, coder) == \
            ([alpha], [bins])
    assert residual_encode([bins], coder, [0]) != residual_encode([bins], coder, [1])
    # n = 0: no bit α, version 7's payload.
    fixed_only = ResidualCoder(coder.bound, coder.coefficients, 0, coder.step,
                               coder.class_bounds, coder.tables)
    assert choose_alpha([100, 102], fixed_only) == (None, bins, rebuilt)
    assert residual_encode([bins], fixed_only) == put_by_hand(one)
    assert residual_decode(put_by_hand(one), 2, 1, fixed_only) == ([None], [bins])
    for model, alphas in ((coder, None), (coder, [None]), (coder, [2]), (fixed_only, [0]),
                          (fixed_only, [1])):
        try:
            residual_encode([bins], model, alphas)
        except AssertionError:
            continue
        raise AssertionError(f"n = {model.order} coded with α {alphas}")
    # Class 0 (level ≤ 16): bin 5 is the escape 3 of table 1 then the distance 2; bin 16 the
    # escape 3, the distance 13, then its raw bits (the value's escape and distance come before
    # the raw bits). 33 bins: two blocks, each with its class. Two channels: channel 0's blocks
    # first, each segment cut on its own.
    block = [5] + [0] * 30 + [16]
    assert coder.block_class(block) == 0 and coder.block_class([0]) == 0
    assert coder.level_class([1] * 32) == 0 and coder.level_class([1] * 31 + [2]) == 0
    # The sender's class is the cheapest, not the level's: [1] * 30 + [2, 2] is of level
    # ⌊16 · 34 / 32⌋ = 17 > 16 (class 1 by the bounds), but costs 7 + 30 · 37 + 2 · 69 = 1255
    # sixteenths in class 0 (f = 3000, 800, 200) against 30 + 32 · 95 = 3070 in class 1
    # (f = 1094, then 64 for every symbol of table 2 but 0).
    assert coder.level_class([1] * 30 + [2, 2]) == 1, "level ⌊16 · 34 / 32⌋ = 17 > 16"
    assert [coder.block_cost([1] * 30 + [2, 2], c) for c in (0, 1)] == [1255, 3070]
    assert coder.block_class([1] * 30 + [2, 2]) == 0
    groups = [[t0.sym(0)], [t1.sym(3), dist_sym(2)]] + [[t1.sym(0)]] * 30 + \
        [[t1.sym(3), dist_sym(13), raw_sym(4, 0)]] + [[t0.sym(0)], [t1.sym(-1)]]
    assert residual_encode([block + [-1]], fixed_only) == put_by_hand(groups)
    assert residual_decode(put_by_hand(groups), 33, 1, fixed_only) == ([None], [block + [-1]])
    groups = [[raw_sym(1, 1)]] + groups   # α once per segment, before its first block only
    assert residual_encode([block + [-1]], coder, [1]) == put_by_hand(groups)
    assert residual_decode(put_by_hand(groups), 33, 1, coder) == ([1], [block + [-1]])
    # Channel 0: level > 16, class 1, bin −1000 the symbol −21 then 1 raw bit (1) and 8
    # (232); channel 1: level ⌊16 · 3 / 6⌋ = 8, class 0, bin −3 the escape −3 + distance 0.
    # Each segment begins with its own α: channel 0's α = 1 first, then its blocks, then
    # channel 1's α = 0 and its blocks.
    two = [[-1000, 3, 0, 0, 0, 0], [0, 0, 0, 0, 0, -3]]
    groups = [[raw_sym(1, 1)], [t0.sym(1)], [t2.sym(-21), raw_sym(1, 1), raw_sym(8, 232)],
              [t2.sym(3)]] + [[t2.sym(0)]] * 4 + [[raw_sym(1, 0)], [t0.sym(0)]] + \
        [[t1.sym(0)]] * 5 + [[t1.sym(-3), dist_sym(0)]]
    assert residual_encode(two, coder, [1, 0]) == put_by_hand(groups)
    assert residual_decode(put_by_hand(groups), 6, 2, coder) == ([1, 0], two)

    # Round trips: random-ish signals with the ends of the i16 range, for several bounds,
    # predictors, channel counts and segment lengths (blocks cut at 32). Each sample rebuilt
    # within E′ (bounded_payload asserts it); E′ = 0 exactly, differences wrapping to i16
    # (s − p outside the i16 range) and the bin −32 768 among them. With n = 3 each segment's
    # α follows the sender's rule (check_choice), the stage winning, losing and tying.
    rng = lcg(12345)
    wrapped = minimum = 0
    cases = dict(none=0, tie=0, loses=0, wins=0)
    for bound in (0, 1, 2, 3, 100, I16_MAX):
        for coefficients in ([], [4096], coder.coefficients, [8192, -4096], [-4096, 0, 0, 4095],
                             [I16_MAX, I16_MIN, I16_MAX, I16_MIN]):
            for order, step in ((0, 0), (coder.order, coder.step)):
                model = ResidualCoder(bound, coefficients, order, step, coder.class_bounds,
                                      coder.tables)
                for count, m in ((1, 1), (1, 31), (2, 32), (1, 33), (3, 64), (2, 65)):
                    channels = [signal(rng, m) for _ in range(count)]
                    channels[0][0] = I16_MIN  # p = 0 on a segment's first sample
                    _, _, _, rebuilt, bins, alphas = bounded_payload(channels, model)
                    for channel, a, b, xs in zip(channels, alphas, bins, rebuilt):
                        cases[check_choice(channel, model, a, b, xs)] += 1
                    if bound == 0:
                        assert rebuilt == channels, "E′ = 0: exact"
                        for channel, a in zip(channels, alphas):
                            state = Segment(model, adapts(a))
                            for s in channel:
                                p = state.predict()
                                wrapped += not I16_MIN <= s - p <= I16_MAX
                                state.push(s)
                        minimum += sum(q == I16_MIN for b in bins for q in b)
    assert wrapped > 0 and minimum > 0, (wrapped, minimum)
    assert all(cases.values()), cases

    # The bin −32 768 round-trips (symbol −27, 15 raw bits of 0); +32 768 (symbol 27, raw 0)
    # is refused, and so is −32 769 (symbol −27, raw 1); +32 767 is a bin.
    a0, a1 = [raw_sym(1, 0)], [raw_sym(1, 1)]   # a segment's α (n = 3)
    for q in (I16_MIN, I16_MAX):
        for alpha in (0, 1):
            payload = residual_encode([[q]], lossless, [alpha])
            assert residual_decode(payload, 1, 1, lossless) == ([alpha], [[q]])
            assert segment_samples([q], lossless, adaptive=alpha == 1) == [q]
    for symbol, raw in ((27, 0), (-27, 1)):
        why = []
        forged = put_by_hand([a1, [t0.sym(1)], [t2.sym(symbol), raw_sym(7, raw >> 8),
                                                raw_sym(8, raw & 0xFF)]])
        assert residual_decode(forged, 1, 1, lossless, why) is None and why == ["bin"], why

    # Forged payloads are refused: a class ≥ K (table 0's escape 2 + distance 0 or 1) or
    # negative (its escape −1 + distance 0); a symbol of magnitude 28 (table 2's escapes ±28 +
    # distance 0; table 1's escape 3 + distance 25); a value past the i16 range; a final
    # state not 0 (a symbol left over); a word left unread; an odd length; a zero last word.
    tail = [[t2.sym(1)], [t2.sym(0)]]
    for head, reason in (([t0.sym(2), dist_sym(0)], "class"), ([t0.sym(2), dist_sym(1)], "class"),
                         ([t0.sym(-1), dist_sym(0)], "class"),
                         ([t0.sym(2), dist_sym(255), dist_sym(255), dist_sym(255)], "value")):
        why = []
        assert residual_decode(put_by_hand([a0, head] + tail), 2, 1, coder, why) is None
        assert why == [reason], (head, why)
    for bad, reason in (([t2.sym(28), dist_sym(0)], "symbol"), ([t2.sym(-28), dist_sym(0)], "symbol"),
                        ([t2.sym(28), dist_sym(255), dist_sym(255), dist_sym(255)], "value")):
        why = []
        assert residual_decode(put_by_hand([a1, [t0.sym(1)], bad, [t2.sym(0)]]), 2, 1, coder,
                               why) is None and why == [reason], (bad, why)
    why = []
    assert residual_decode(put_by_hand([a0, [t0.sym(0)], [t1.sym(3), dist_sym(25)],
                                        [t1.sym(0)]]), 2, 1, coder, why) is None
    assert why == ["symbol"], why
    good = [a0, [t0.sym(1)], [t2.sym(16), raw_sym(4, 4)], [t2.sym(-10)]]
    assert residual_decode(put_by_hand(good), 2, 1, coder) == ([0], [[20, -10]])
    why = []
    assert residual_decode(put_by_hand(good + [[t2.sym(5)]]), 2, 1, coder, why) is None
    assert why == ["state"], why
    # The α of a second segment that is not there is a symbol left over too.
    why = []
    assert residual_decode(put_by_hand(good + [a1]), 2, 1, coder, why) is None
    assert why == ["state"], why
    payload = residual_encode([[-1000, 3, 7000, -20000]], coder, [1])
    assert len(payload) >= 4 and residual_decode(payload, 4, 1, coder) is not None
    # A word too many (the decoder takes it in, so its state does not end at 0 or a word is
    # left), an odd length, a zero last word.
    for forged, reasons in ((payload[:2] + payload, ("words", "state")),
                            (payload + b"\x00", ("length",)),
                            (payload[:-2] + b"\x00\x00", ("length",))):
        why = []
        assert residual_decode(forged, 4, 1, coder, why) is None and why[0] in reasons, why
    assert residual_decode(b"", 0, 1, fixed_only) == ([None], [[]]), "no bins, an empty payload"
    assert residual_decode(b"", 0, 1, coder) == ([0], [[]]), "α = 0 from state 0 puts nothing"

    # Framing: len ≤ 2N, raw when coding is not shorter (samples as rebuilt), the largest
    # frames (N = 1024: len 2048, and a last frame's 2051, 2055 bytes with the check), last
    # frames read only under END and carry exactly their samples; refused: samples 0 or above
    # windows_per_frame × window, len < 3, len above 2N + 3, a body longer than 2N′.
    ids = dict(stream_id=6, session=0xCAFE, frame=5)
    rng = lcg(777)
    # Uniform noise, 16 channels × 64 = 1024 samples: coding is not shorter.
    noisy = [[(next(rng) % 65536) - 32768 for _ in range(64)] for _ in range(16)]
    item, sent_coded, _, rebuilt, _, _ = bounded_frame(noisy, lossless, frame_flags=SATURATED,
                                                       **ids)
    assert not sent_coded and item[:2] == length_prefix(2048) == b"\x80\x10"
    assert len(item) == 2052 and item[2:-2] == i16_samples(noisy)
    assert read_entropy_frame(item, 1023, frame_flags=SATURATED, **ids) is None, "len > 2N"
    item, sent_coded, _, _, _, _ = bounded_end_frame(noisy, lossless, window=64, windows_per_frame=1,
                                                  frame_flags=0, **ids)
    assert not sent_coded and item[:2] == length_prefix(2051) and len(item) == 2055
    assert item[2:5] == u24(64)
    item, sent_coded, coded_len, rebuilt, _, _ = bounded_end_frame(
        [[1, 2, 3], [7, 7, 7]], coder, window=8, windows_per_frame=2, frame_flags=SATURATED, **ids)
    assert sent_coded and item[1:4] == u24(3) and len(item) == 1 + 3 + coded_len + 2
    assert read_bounded_end_frame(item, 8, 2, 2, frame_flags=END, **ids) is None, "flags"
    assert read_bounded_end_frame(item, 8, 2, 3, frame_flags=SATURATED | END, **ids) is not None
    # A raw frame whose rebuilt samples differ from the inputs carries the rebuilt ones.
    jumps = [[(-1) ** t * (20000 + 7 * t) for t in range(8)]]
    item, sent_coded, _, rebuilt, _, _ = bounded_frame(jumps, coder, frame_flags=0, **ids)
    assert not sent_coded and rebuilt != jumps and item[1:-2] == i16_samples(rebuilt)

    def forged(payload, flags=END):
        item = length_prefix(len(payload)) + payload
        return item + check_bytes(item, frame_flags=flags, **ids)

    for samples in (0, 17, (1 << 24) - 1):
        item = forged(u24(samples) + bytes(4))
        assert read_entropy_frame(item, 32, frame_flags=END, **ids) is not None
        assert read_bounded_end_frame(item, 8, 2, 2, frame_flags=END, **ids) is None, samples
    for payload in (b"", b"\x01\x00"):
        assert read_bounded_end_frame(forged(payload), 8, 2, 2, frame_flags=END, **ids) is None
    assert read_bounded_end_frame(forged(u24(16) + bytes(65)), 8, 2, 2, frame_flags=END,
                                  **ids) is None, "len above 2N + 3"
    read = read_bounded_end_frame(forged(u24(16) + i16_samples([[5] * 16, [-5] * 16])), 8, 2, 2,
                                  frame_flags=END, **ids)
    assert read is not None and decode_bounded_payload(read[1], 16, 2, coder) == \
        [[5] * 16, [-5] * 16], "samples = windows_per_frame × window, raw"
    read = read_bounded_end_frame(forged(u24(1) + i16_samples([[5, 5], [5, 5]])), 8, 2, 2,
                                  frame_flags=END, **ids)
    assert read is not None and read[0] == 1
    assert decode_bounded_payload(read[1], 1, 2, coder) is None, "a body longer than 2N′"


def segment_v7(samples, coder):
    """Version 7's closed loop, kept as it was written from the version-7 text (the fixed
    prediction alone, p = clamp((P + 2048) >> 12)): the reference for n = 0. Returns (bins,
    rebuilt)."""
    history = [0, 0, 0, 0]
    bins, rebuilt = [], []
    for s in samples:
        big_p = sum(a * h for a, h in zip(coder.coefficients, history))
        p = clamp16((big_p + 2048) >> 12)
        q = coder.bin(s, p)
        x = coder.sample(p, q)
        bins.append(q)
        rebuilt.append(x)
        history = [x] + history[:3]
    return bins, rebuilt


def check_choice(samples, coder, alpha, bins, rebuilt):
    """The sender's rule ("Adapting or not") checked on one segment the sender coded with α,
    its bins and rebuilt samples: no α when n = 0; otherwise the segment coded both ways from
    the empty state, α = 1 exactly when the stage's Σ|q| is strictly smaller, and the bins
    and samples those of the way chosen. α = 0 is n = 0 exactly: the sender's loop equals
    version 7's (segment_v7) and an order-0 coder's, and the receiver's rebuilding (Segment
    and the literal one) of its bins equals an order-0 coder's. Returns the case: "none"
    (n = 0), "tie" (equal sums: α = 0), "loses" (the stage's sum larger: α = 0), "wins"."""
    v7 = segment_v7(samples, coder)
    if coder.order == 0:
        assert alpha is None and (bins, rebuilt) == v7, "n = 0: no α, version 7"
        return "none"
    fixed_only = ResidualCoder(coder.bound, coder.coefficients, 0, coder.step,
                               coder.class_bounds, coder.tables)
    with_stage = segment_bins(samples, coder, adaptive=True)
    without = segment_bins(samples, coder, adaptive=False)
    assert without == v7 == segment_bins(samples, fixed_only), "α = 0: as if n = 0"
    assert segment_samples(without[0], coder, adaptive=False) == \
        segment_samples(without[0], fixed_only) == rebuild_literal(without[0], coder, 0) == \
        rebuild_literal(without[0], fixed_only) == without[1], "α = 0 rebuilds as n = 0"
    cost_with, cost_without = (sum(abs(q) for q in way[0]) for way in (with_stage, without))
    want = 1 if cost_with < cost_without else 0
    assert alpha == want, (alpha, cost_with, cost_without)
    assert (bins, rebuilt) == (with_stage if want else without)
    return "wins" if want else "tie" if cost_with == cost_without else "loses"


def rebuild_literal(bins, coder, alpha=None):
    """The receiver's "Rebuilding" once more, line by line from the spec's pseudo-code with
    1-based lists and no shared helper (// and % instead of >> and wrap16), to check Segment
    against: h_1 … h_4, w_1 … w_n, g_1 … g_n, all 0 at the segment's start. alpha: the
    segment's bit when n ≥ 1 ("Adapting or not": α = 0 rebuilds it as if n = 0)."""
    a, n, mu, e = coder.coefficients, coder.order, coder.step, coder.bound
    if n >= 1:
        assert alpha in (0, 1), "a segment has its bit α when n ≥ 1"
        if alpha == 0:
            n = 0
    else:
        assert alpha is None, "no bit α when n = 0"

    def clamp(v, lo=-32768, hi=32767):
        return lo if v < lo else hi if v > hi else v

    h = [None, 0, 0, 0, 0]
    w = [None] + [0] * n
    gg = [None] + [0] * n
    out = []
    for q in bins:
        big_p = 0
        for i in range(1, len(a) + 1):
            big_p += a[i - 1] * h[i]
        f = (big_p + 2048) // 4096
        big_a = 0
        for j in range(1, n + 1):
            big_a += w[j] * gg[j]
        g = (big_a + 8192) // 16384
        p = clamp(f + g)
        if e == 0:
            x = (p + q + 32768) % 65536 - 32768
        else:
            x = clamp(p + q * (2 * e + 1))
        if n >= 1:
            big_s = 1
            for j in range(1, n + 1):
                big_s += gg[j] * gg[j]
            k = 0
            while 2 ** (k + 1) <= big_s:
                k += 1
            z = 14 - k - mu
            u = clamp(x - f - g)
            for j in range(1, n + 1):
                t = u * gg[j] * 2 ** z if z >= 0 else (u * gg[j]) // 2 ** -z
                w[j] = clamp(w[j] + t, -262144, 262144)
            for j in range(n, 1, -1):
                gg[j] = gg[j - 1]
            gg[1] = clamp(x - f)
        h[4] = h[3]
        h[3] = h[2]
        h[2] = h[1]
        h[1] = x
        out.append(x)
    return out


def varied_signal(rng, m):
    """A random-ish i16 segment made of pieces: constant runs (also at −32768 and 32767),
    steps, ramps, a triangle wave, noise around a level, and alternations between the ends of
    the i16 range."""
    out = []
    x = 0
    while len(out) < m:
        kind = next(rng) % 7
        length = 1 + next(rng) % 24
        if kind == 0:    # a constant run at a random level or an end of the i16 range
            x = (I16_MIN, I16_MAX, (next(rng) % 65536) - 32768)[next(rng) % 3]
            piece = [x] * length
        elif kind == 1:  # a step, then flat
            x = clamp16(x + (next(rng) % 60001) - 30000)
            piece = [x] * length
        elif kind == 2:  # a ramp
            slope = (next(rng) % 4001) - 2000
            piece = []
            for _ in range(length):
                x = clamp16(x + slope)
                piece.append(x)
        elif kind == 3:  # a triangle wave
            amplitude, period = 1 + next(rng) % 20000, 2 + next(rng) % 16
            base = x
            piece = [clamp16(base + amplitude * (abs((t % period) * 2 - period) - period // 2)
                             // max(1, period // 2)) for t in range(length)]
            x = piece[-1]
        elif kind == 4:  # noise around the level
            spread = 1 + next(rng) % 3000
            piece = [clamp16(x + (next(rng) % (2 * spread + 1)) - spread) for _ in range(length)]
        elif kind == 5:  # the ends of the i16 range, alternating
            piece = [(I16_MIN, I16_MAX)[t % 2] for t in range(length)]
            x = piece[-1]
        else:            # uniform noise
            piece = [(next(rng) % 65536) - 32768 for _ in range(length)]
            x = piece[-1]
        out += piece
    return out[:m]


def check_adaptive(coder):
    """The self-checks of the adaptive stage ("Rebuilding", version 8), with vector 5's coder
    (E′ = 2, prediction [6144, −2048], n = 3, μ = 1) and others."""
    assert (coder.order, coder.step) == (3, 1)

    # The ranges: n 0 … 16, μ 0 … 15.
    for order, step in ((-1, 0), (17, 0), (0, -1), (0, 16)):
        try:
            ResidualCoder(0, [], order, step, coder.class_bounds, coder.tables)
        except AssertionError:
            continue
        raise AssertionError(f"n = {order}, μ = {step} accepted")

    def with_(bound=None, coefficients=None, order=None, step=None):
        return ResidualCoder(coder.bound if bound is None else bound,
                             coder.coefficients if coefficients is None else coefficients,
                             coder.order if order is None else order,
                             coder.step if step is None else step,
                             coder.class_bounds, coder.tables)

    def trace(model, samples):
        """Per sample, the stage running (α = 1): (f, g, p, q, x, S, k, z, u, w after,
        g_1 … g_n after)."""
        state, rows = Segment(model), []
        for sample in samples:
            p = state.predict()
            f, g = state.f, state.g
            q = model.bin(sample, p)
            x = model.sample(p, q)
            big_s = 1 + sum(gj * gj for gj in state.gs)
            k = big_s.bit_length() - 1
            z = ADAPTIVE_FRAC - k - model.step
            u = clamp16(x - f - g)
            state.push(x)
            rows.append((f, g, p, q, x, big_s, k, z, u, state.w, state.gs))
        # The sender's loop, the receiver's rebuilding and the literal rebuilding agree.
        bins = [row[3] for row in rows]
        assert segment_bins(samples, model) == (bins, [row[4] for row in rows])
        assert segment_samples(bins, model) == rebuild_literal(bins, model, 1) == \
            [row[4] for row in rows]
        return rows

    # By hand, vector 5's coder (n = 3, μ = 1, E′ = 2: bins 5 wide), samples 100, 102, 104, 105:
    # 1. h = 0: f = 0; A = 0, g = 0; p = 0; q = ⌊(100 + 2) / 5⌋ = 20, x = 100. S = 1, k = 0,
    #    z = 14 − 0 − 1 = 13; u = 100; every w_j += 100 · 0 << 13 = 0. g = [100, 0, 0].
    # 2. f = (6144 · 100 + 2048) >> 12 = 616448 >> 12 = 150 (150.5 rounded down); A = 0, g = 0;
    #    p = 150; d = −48, q = −⌊50 / 5⌋ = −10, x = 100. S = 1 + 100² = 10001, k = 13, z = 0;
    #    u = 100 − 150 − 0 = −50; w_1 += −50 · 100 = −5000 (the g_1 = 100 the prediction used,
    #    not the −50 it is about to become: that would give +2500); w_2, w_3 += 0.
    #    g = [clamp(100 − 150), 100, 0] = [−50, 100, 0].
    # 3. f = (6144 · 100 − 2048 · 100 + 2048) >> 12 = 411648 >> 12 = 100 (100.5 rounded down);
    #    A = −5000 · −50 = 250000, g = (250000 + 8192) >> 14 = 258192 >> 14 = 15 (15.76);
    #    p = 115; d = −11, q = −⌊13 / 5⌋ = −2, x = 105. S = 1 + 2500 + 10000 = 12501, k = 13,
    #    z = 0; u = 105 − 100 − 15 = −10; w_1 = −5000 + (−10 · −50) = −4500, w_2 = 0 + (−10 ·
    #    100) = −1000, w_3 = 0. g = [105 − 100, −50, 100] = [5, −50, 100].
    # 4. f = (6144 · 105 − 2048 · 100 + 2048) >> 12 = 442368 >> 12 = 108 (exactly);
    #    A = −4500 · 5 + −1000 · −50 + 0 · 100 = 27500, g = 35692 >> 14 = 2; p = 110; d = −5,
    #    q = −⌊7 / 5⌋ = −1, x = 105. S = 1 + 25 + 2500 + 10000 = 12526, k = 13, z = 0;
    #    u = 105 − 108 − 2 = −5; w = [−4500 − 25, −1000 + 250, 0 − 500] = [−4525, −750, −500].
    #    g = [105 − 108, 5, −50] = [−3, 5, −50].
    # Version 7 (n = 0) goes its own way from step 3: p = 100, q = 1, x = 105; then p = 108,
    # q = −1, x = 103.
    assert trace(coder, [100, 102, 104, 105]) == [
        (0, 0, 0, 20, 100, 1, 0, 13, 100, [0, 0, 0], [100, 0, 0]),
        (150, 0, 150, -10, 100, 10001, 13, 0, -50, [-5000, 0, 0], [-50, 100, 0]),
        (100, 15, 115, -2, 105, 12501, 13, 0, -10, [-4500, -1000, 0], [5, -50, 100]),
        (108, 2, 110, -1, 105, 12526, 13, 0, -5, [-4525, -750, -500], [-3, 5, -50])]
    assert segment_v7([100, 102, 104, 105], coder) == ([20, -10, 1, -1], [100, 100, 105, 103])
    assert segment_bins([100, 102, 104, 105], with_(order=0)) == \
        ([20, -10, 1, -1], [100, 100, 105, 103])

    # By hand, a negative shift rounds down: no fixed prediction (f = 2048 >> 12 = 0), n = 1,
    # μ = 15, E′ = 0 (x = s), samples 3, −7, 20:
    # 1. p = 0, q = 3; S = 1, k = 0, z = 14 − 0 − 15 = −1; u = 3; w_1 += (3 · 0) >> 1 = 0.
    #    g_1 = 3.
    # 2. A = 0, p = 0, q = −7; S = 1 + 9 = 10, k = 3, z = −4; u = −7; w_1 += (−7 · 3) >> 4 =
    #    ⌊−21 / 16⌋ = −2 (truncating toward 0 would give −1). g_1 = −7.
    # 3. A = −2 · −7 = 14, g = (14 + 8192) >> 14 = 0, p = 0, q = 20; S = 1 + 49 = 50, k = 5,
    #    z = −6; u = 20; w_1 += (20 · −7) >> 6 = ⌊−140 / 64⌋ = −3: w_1 = −5. g_1 = 20.
    model = with_(bound=0, coefficients=[], order=1, step=15)
    assert trace(model, [3, -7, 20]) == [
        (0, 0, 0, 3, 3, 1, 0, -1, 3, [0], [3]),
        (0, 0, 0, -7, -7, 10, 3, -4, -7, [-2], [-7]),
        (0, 0, 0, 20, 20, 50, 5, -6, 20, [-5], [20])]

    # By hand, the clamps of the weights, p and u, and wrapping: no fixed prediction, n = 1,
    # μ = 0, E′ = 0, samples 1, 32767, −32768:
    # 1. p = 0, q = 1; S = 1, k = 0, z = 14; u = 1; w_1 += 1 · 0 << 14 = 0. g_1 = 1.
    # 2. A = 0, p = 0, q = 32767; S = 2, k = 1, z = 13; u = 32767; w_1 = clamp(32767 · 1 <<
    #    13 = 268427264) = 262144. g_1 = 32767.
    # 3. A = 262144 · 32767 = 8589672448, g = (A + 8192) >> 14 = 524272 (16 · 32767), p =
    #    clamp(0 + 524272) = 32767; q = −32768 − 32767 wrapped = 1, x = 32767 + 1 wrapped =
    #    −32768. S = 1 + 32767² = 1073676290, k = 29, z = −15; u = clamp(−32768 − 0 − 524272)
    #    = −32768; w_1 = 262144 + (−32768 · 32767) >> 15 = 262144 − 32767 = 229377.
    #    g_1 = −32768.
    model = with_(bound=0, coefficients=[], order=1, step=0)
    assert trace(model, [1, I16_MAX, I16_MIN]) == [
        (0, 0, 0, 1, 1, 1, 0, 14, 1, [0], [1]),
        (0, 0, 0, I16_MAX, I16_MAX, 2, 1, 13, I16_MAX, [WEIGHT_LIMIT], [I16_MAX]),
        (0, 524272, I16_MAX, 1, I16_MIN, 1073676290, 29, -15, I16_MIN, [229377], [I16_MIN])]

    # By hand, f beyond the i16 range and the clamp of g_1: a_1 = 8192 (2.0), n = 1, μ = 0,
    # E′ = 0, samples 20000, −30000:
    # 1. f = 0, p = 0, q = 20000; S = 1, z = 14, u = 20000, w_1 += 0. g_1 = 20000.
    # 2. f = (8192 · 20000 + 2048) >> 12 = 40000 (not clamped), g = 0, p = 32767; q = −30000 −
    #    32767 = −62767 wrapped = 2769, x = 32767 + 2769 = 35536 wrapped = −30000. S = 1 +
    #    20000² = 400000001, k = 28, z = −14; u = clamp(−30000 − 40000 − 0) = −32768; w_1 +=
    #    (−32768 · 20000) >> 14 = −40000. g_1 = clamp(−30000 − 40000) = −32768.
    model = with_(bound=0, coefficients=[8192], order=1, step=0)
    assert trace(model, [20000, -30000]) == [
        (0, 0, 0, 20000, 20000, 1, 0, 14, 20000, [0], [20000]),
        (40000, 0, I16_MAX, 2769, -30000, 400000001, 28, -14, I16_MIN, [-40000], [I16_MIN])]

    # Adapting or not ("Adapting or not"), by hand: the sender codes each segment both ways
    # from the empty state and sets α = 1 only when the stage's Σ|q| is strictly smaller.
    # Adapting loses: vector 5's coder on 100, 102, 104, 105 (above): with the stage the bins
    # are 20, −10, −2, −1 (Σ|q| = 33), without them 20, −10, 1, −1 (32): α = 0, and the
    # segment is version 7's (rebuilt 100, 100, 105, 103).
    loses = [100, 102, 104, 105]
    assert choose_alpha(loses, coder) == (0, [20, -10, 1, -1], [100, 100, 105, 103])
    assert check_choice(loses, coder, 0, [20, -10, 1, -1], [100, 100, 105, 103]) == "loses"
    # Adapting wins: no fixed prediction (f = 0), n = 1, μ = 0, E′ = 0 (x = s), samples 10,
    # 10, 10, 10. Without the stage p = 0 and every bin is 10 (Σ|q| = 40). With it:
    # 1. p = 0, q = 10; S = 1, k = 0, z = 14; u = 10; w_1 += 10 · 0 = 0. g_1 = 10.
    # 2. A = 0, p = 0, q = 10; S = 1 + 100 = 101, k = 6, z = 8; u = 10; w_1 += (10 · 10) << 8
    #    = 25600. g_1 = 10.
    # 3. A = 25600 · 10 = 256000, g = 264192 >> 14 = 16 (16.1), p = 16, q = −6; S = 101,
    #    z = 8; u = 10 − 0 − 16 = −6; w_1 = 25600 + (−60 << 8) = 10240. g_1 = 10.
    # 4. A = 102400, g = 110592 >> 14 = 6 (6.75), p = 6, q = 4; u = 4; w_1 = 10240 + (40 << 8)
    #    = 20480. g_1 = 10.
    # Σ|q| = 10 + 10 + 6 + 4 = 30 < 40: α = 1. Over the first two samples alone both ways give
    # 10, 10: a tie, α = 0; over three, 26 < 30: α = 1.
    model = with_(bound=0, coefficients=[], order=1, step=0)
    assert trace(model, [10] * 4) == [
        (0, 0, 0, 10, 10, 1, 0, 14, 10, [0], [10]),
        (0, 0, 0, 10, 10, 101, 6, 8, 10, [25600], [10]),
        (0, 16, 16, -6, 10, 101, 6, 8, -6, [10240], [10]),
        (0, 6, 6, 4, 10, 101, 6, 8, 4, [20480], [10])]
    assert segment_bins([10] * 4, model, adaptive=False) == ([10] * 4, [10] * 4)
    assert choose_alpha([10] * 4, model) == (1, [10, 10, -6, 4], [10] * 4)
    assert choose_alpha([10] * 3, model) == (1, [10, 10, -6], [10] * 3)
    assert choose_alpha([10] * 2, model) == (0, [10, 10], [10, 10]), "a tie is α = 0"
    assert check_choice([10] * 4, model, 1, [10, 10, -6, 4], [10] * 4) == "wins"
    assert check_choice([10] * 2, model, 0, [10, 10], [10, 10]) == "tie"
    # A segment of one sample always ties (g = 0 on a segment's first sample).
    assert choose_alpha([12345], coder)[0] == 0 and choose_alpha([12345], model)[0] == 0
    # The payload: α first in each segment, then its blocks. Two channels under that model
    # (n = 1): channel 0 [10] × 4 (α = 1), channel 1 [0] × 4 (a tie: α = 0). Level ⌊16 · 30 / 4⌋ = 120: class 1; level 0:
    # class 0.
    payload, sent_coded, _, rebuilt, bins, alphas = bounded_payload([[10] * 4, [0] * 4], model)
    t0, t1, t2 = coder.tables
    assert sent_coded and alphas == [1, 0] and bins == [[10, 10, -6, 4], [0] * 4]
    assert payload == put_by_hand(
        [[raw_sym(1, 1)], [t0.sym(1)], [t2.sym(10)], [t2.sym(10)], [t2.sym(-6)], [t2.sym(4)],
         [raw_sym(1, 0)], [t0.sym(0)]] + [[t1.sym(0)]] * 4)
    # Its α bits flipped: the same bins, read the other way, rebuild something else (a payload
    # is never refused for its α, a raw bit either way). Channel 0 as if n = 0: x = p + q with
    # p = 0, so 10, 10, −6, 4; channel 1 with the stage: all bins 0, all g_1 = 0, the same 0s.
    flipped = residual_encode(bins, model, [0, 1])
    assert residual_decode(flipped, 4, 2, model) == ([0, 1], bins)
    assert decode_bounded_payload(flipped, 4, 2, model) == [[10, 10, -6, 4], [0] * 4] != rebuilt
    # Vector 5's coder: the losing segment's bins 20, −10, 1, −1 sent with α = 1 instead: the
    # first two samples as before (the stage predicts 0 until its weights move), then f = 100,
    # g = 15 (the weights of the trace above: the same x so far), p = 115, x = 115 + 5 = 120,
    # not 105.
    flipped = residual_encode([[20, -10, 1, -1]], coder, [1])
    assert decode_bounded_payload(flipped, 4, 1, coder)[0][:3] == [100, 100, 120]

    # Each segment starts afresh: in a frame of two equal channels, both get the same α and
    # bins, whatever the first channel taught the stage; and a receiver rebuilds them so.
    samples = [100, 102, 104, 105, 107, 108, 108, 107]
    _, _, _, rebuilt, bins, alphas = bounded_payload([samples, samples], coder)
    assert alphas[0] == alphas[1] and bins[0] == bins[1] == choose_alpha(samples, coder)[1]
    assert rebuilt[0] == rebuilt[1]
    for way in (samples, [10] * 8):   # both α
        _, _, _, rebuilt, bins, alphas = bounded_payload([way, way], model)
        assert alphas[0] == alphas[1] and bins[0] == bins[1] and rebuilt[0] == rebuilt[1]

    # n = 0 is version 7 exactly, whatever μ; and random-ish signals with random n and μ (the
    # extremes among them): every sample within E′ (E′ = 0: equal), the sender's rebuilt
    # samples equal the receiver's (bounded_payload asserts both, and the coded payload's round
    # trip, α bits included), Segment equals the literal rebuilding, each segment's α follows
    # the sender's rule and an α = 0 segment is n = 0's exactly (check_choice; the stage wins,
    # loses and ties, both α in one frame), every intermediate result fits in 48 bits (two's
    # complement: a magnitude below 2^47), and every clamp (p, u, w_j, g_1) and a negative
    # shift z occur (in the stage's run, whichever way the sender chose). The payload with its
    # α bits flipped (all, or channel 0's) decodes to the same bins read the other way,
    # something else than the frame sent unless the two ways rebuild the same; a payload with
    # a flipped bit anywhere is refused or decodes to samples (i16, m per channel), never
    # an exception.
    rng = lcg(8)
    hits = dict(p=0, u=0, w=0, g1=0, negative_z=0)
    widest = changed = 0
    cases = dict(none=0, tie=0, loses=0, wins=0)
    wins_lossless = wins_lossy = mixed = other = same = refused = decoded = 0
    extremes = [(0, 0), (0, MAX_STEP), (1, 0), (1, MAX_STEP), (MAX_ORDER, 0),
                (MAX_ORDER, MAX_STEP), (coder.order, coder.step)]
    predictors = ([], [4096], coder.coefficients, [8192, -4096], [-4096, 0, 0, 4095],
                  [I16_MAX, I16_MIN, I16_MAX, I16_MIN], [12288, -12288, 4096])
    for trial in range(120):
        bound = (0, 0, 1, 2, 3, 100, I16_MAX)[trial % 7]
        coefficients = predictors[(trial // 7) % len(predictors)]
        if trial < 2 * len(extremes):
            order, step = extremes[trial % len(extremes)]
        else:
            order, step = next(rng) % (MAX_ORDER + 1), next(rng) % (MAX_STEP + 1)
        model = ResidualCoder(bound, coefficients, order, step, coder.class_bounds, coder.tables)
        count = 1 + next(rng) % 3
        m = (1, 2, 5, 31, 32, 33, 64, 65, 200, 341)[next(rng) % 10]
        maker = varied_signal if trial % 3 else signal
        channels = [maker(rng, m) for _ in range(count)]
        _, _, _, rebuilt, bins, alphas = bounded_payload(channels, model)
        if bound == 0:
            assert rebuilt == channels, "E′ = 0: exact"
        mixed += len(set(alphas)) > 1
        for channel, b, xs, alpha in zip(channels, bins, rebuilt, alphas):
            case = check_choice(channel, model, alpha, b, xs)
            cases[case] += 1
            if case == "wins":
                wins_lossless += bound == 0
                wins_lossy += bound > 0
            state = Segment(model, adapts(alpha))
            assert segment_bins(channel, model, state, adapts(alpha)) == (b, xs)
            assert rebuild_literal(b, model, alpha) == xs == \
                segment_samples(b, model, adaptive=adapts(alpha))
            # The stage's run (the sender codes both ways): its widths and clamps.
            state = Segment(model)
            segment_bins(channel, model, state)
            widest = max(widest, state.widest)
            for key in hits:
                hits[key] += state.hits[key]
            if order == 0:
                for mu in (0, 7, MAX_STEP):
                    other_mu = ResidualCoder(bound, coefficients, 0, mu, coder.class_bounds,
                                             coder.tables)
                    assert segment_bins(channel, other_mu) == (b, xs)
                    assert segment_samples(b, other_mu) == xs
            else:
                changed += segment_v7(channel, model)[0] != segment_bins(channel, model)[0]
        if order == 0:
            continue
        # α bits flipped: all of them, then channel 0's alone.
        for flips in ([1 - a for a in alphas], [1 - alphas[0]] + alphas[1:]):
            payload = residual_encode(bins, model, flips)
            assert residual_decode(payload, m, count, model) == (flips, bins)
            back = [segment_samples(b, model, adaptive=a == 1) for a, b in zip(flips, bins)]
            if len(payload) < 2 * m * count:   # else a frame would not carry it coded
                assert decode_bounded_payload(payload, m, count, model) == back
            if back != rebuilt:
                other += 1
            else:
                same += 1
                assert all(segment_samples(b, model, adaptive=True) ==
                           segment_samples(b, model, adaptive=False)
                           for a, f, b in zip(alphas, flips, bins) if a != f)
        # Any one bit of the coded payload flipped: refused, or samples; never an exception.
        payload = residual_encode(bins, model, alphas)
        for _ in range(8):
            if not payload:
                break
            bit = next(rng) % (8 * len(payload))
            damaged = bytearray(payload)
            damaged[bit // 8] ^= 1 << (bit % 8)
            back = decode_bounded_payload(bytes(damaged), m, count, model)
            if back is None:
                refused += 1
            else:
                decoded += 1
                assert len(back) == count and all(len(xs) == m for xs in back)
                assert all(I16_MIN <= x <= I16_MAX for xs in back for x in xs)
    assert 0 < widest <= 47, widest
    assert all(hits.values()) and changed > 0, (hits, changed)
    assert all(cases.values()) and wins_lossless and wins_lossy and mixed, (cases, mixed)
    assert other > same and refused and decoded, (other, same, refused, decoded)
    return widest, hits, cases


def golden_5_coder():
    """Vector 5's residual coder: E′ = 2, prediction [6144, −2048] (1.5 and −0.5), an
    adaptive stage of order n = 3 with step μ = 1, blocks of 32, class bounds [16] (two
    classes); table 0 (classes) -1 ..= 2, table 1 (class 0) -3 ..= 3, table 2 (class 1)
    -28 ..= 28."""
    return ResidualCoder(bound=2, coefficients=[6144, -2048], order=3, step=1,
                         class_bounds=[16], tables=[
                             Table(-1, [1, 3000, 1094, 1]),
                             Table(-3, [16, 200, 800, 2064, 800, 200, 16]),
                             Table(-28, [512 if c == 0 else 64 for c in range(-28, 29)])])


def golden_5(report=None):
    common = dict(stream_id=4, session=0x0506)
    coder = golden_5_coder()
    check_bounded(coder)
    check_adaptive(coder)
    t0, t1, t2 = coder.tables
    window, windows_per_frame, header_interval, channels = 8, 2, 64, 2
    m = windows_per_frame * window
    assert m == 16 and windows_per_frame * window * channels <= 1024
    # Frame 2: (−1)^b(t) · (30001 + ⌊t/2⌋), b(t) the number of 1 bits of t, for t = 0 … 15.
    alternating = [(-1) ** bin(t).count("1") * (30001 + t // 2) for t in range(16)]
    assert alternating[:4] == [30001, -30001, -30002, 30002], "the spec's first four"
    assert alternating[4:8] == [-30003, 30003, 30004, -30004]
    # (samples per channel, frame_flags, the spec's bullet: coded?)
    frames = [
        ([[100, 102, 104, 105, 107, 108, 108, 107, 105, 103, 100, 98, 97, 97, 98, 100],
          [-5, -5, -4, -4, -3, -3, -3, -2, -2, -2, -1, -1, 0, 0, 0, 1]], 0, True),
        ([[32767, 32767, 32760, 0, -32768, -32768, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5],
          [1000, -1000, 20000, -20000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], SATURATED, True),
        ([alternating, [-x for x in alternating]], 0, False),
    ]
    # Frame 3, the last (END): 5 samples per channel, carried exactly (no padding), coded.
    last = ([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], 0, True)

    items = [header(flags=RESTART | ENTROPY_CODED | BOUNDED, model_id=MODEL_ID,
                    channels=channels, codes_per_window=0, window=window,
                    windows_per_frame=windows_per_frame, header_interval=header_interval,
                    frame=0, start_sample=0, **common)]
    assert items[0][3] & 0x07 == 0x07 and items[0][11] == 0
    problems, sent = [], []
    for number, (samples, flags, want_coded) in enumerate(frames + [last]):
        is_last = number == len(frames)
        assert flags == (SATURATED if saturated(samples) else 0), "SATURATED: an end reached"
        assert number % header_interval != 0 or number == 0, "no header due but frame 0's"
        if is_last:
            item, sent_coded, coded_len, rebuilt, bins, alphas = bounded_end_frame(
                samples, coder, window, windows_per_frame, frame=number, frame_flags=flags,
                **common)
        else:
            item, sent_coded, coded_len, rebuilt, bins, alphas = bounded_frame(
                samples, coder, frame=number, frame_flags=flags, **common)
        for channel, a, b, xs in zip(samples, alphas, bins, rebuilt):
            check_choice(channel, coder, a, b, xs)
        n = len(samples[0]) * channels
        length, size = read_length(item, m * channels, last=is_last)
        if report is not None:
            report.append((number, sent_coded, coded_len, length, size, len(item),
                           flags | (END if is_last else 0),
                           (f" samples={len(samples[0])}" if is_last else "") +
                           f" α={alphas}"))
        if sent_coded != want_coded:
            problems.append(f"frame {number}: coded payload {coded_len} bytes (2N = {2 * n}), "
                            f"sent {'coded' if sent_coded else 'raw'}; the spec says "
                            f"{'coded' if want_coded else 'raw'}")
        # The receiver reads it under its number and flags only; what it rebuilds is within
        # E′ = 2 of the inputs.
        if is_last:
            read = read_bounded_end_frame(item, window, windows_per_frame, channels,
                                          frame=number, frame_flags=flags | END, **common)
            assert read is not None and read[0] == len(samples[0]) and item[size:size + 3] == \
                u24(len(samples[0])) and length == 3 + len(read[1])
            body = read[1]
            assert read_bounded_end_frame(item, window, windows_per_frame, channels,
                                          frame=number, frame_flags=(flags ^ SATURATED) | END,
                                          **common) is None
            for other in (0, SATURATED):
                assert read_entropy_frame(item, m * channels, frame=number, frame_flags=other,
                                          **common) is None
        else:
            body, _ = read_entropy_frame(item, n, frame=number, frame_flags=flags, **common)
            assert read_entropy_frame(item, n, frame=number, frame_flags=flags ^ SATURATED,
                                      **common) is None
            assert read_bounded_end_frame(item, window, windows_per_frame, channels,
                                          frame=number, frame_flags=flags | END,
                                          **common) is None
        back = decode_bounded_payload(body, len(samples[0]), channels, coder)
        assert back == rebuilt
        assert all(abs(s - x) <= 2 for ch, xs in zip(samples, back) for s, x in zip(ch, xs))
        assert (len(body) == 2 * n) == (not sent_coded)
        sent.append((item, sent_coded, rebuilt, bins, body, alphas))
        items.append(item)
    assert not problems, "\n".join(problems)

    # Frame 2 is sent raw, its samples those a receiver of the coded form rebuilds (which
    # differ from the inputs, within 2).
    item, sent_coded, rebuilt, bins, body, alphas = sent[2]
    coded = residual_encode(bins, coder, alphas)
    assert not sent_coded and len(coded) >= 64 and len(body) == 64
    read = residual_decode(coded, m, channels, coder)
    assert read == (alphas, bins)
    from_coded = [segment_samples(b, coder, adaptive=adapts(a)) for a, b in zip(*read)]
    flat = list(struct.unpack("<32h", body))
    assert [flat[:16], flat[16:]] == from_coded == rebuilt
    inputs = frames[2][0]
    assert all(abs(s - x) <= 2 for ch, xs in zip(inputs, rebuilt) for s, x in zip(ch, xs))
    assert rebuilt != inputs, "frame 2's raw samples differ from the inputs somewhere"
    unequal = sum(s != x for ch, xs in zip(inputs, rebuilt) for s, x in zip(ch, xs))
    assert 2 * unequal > m * channels, f"\"most of them not equal\": {unequal} of {m * channels}"
    # The sender's rule is Σ|q|, not the length: frame 2 with the stage in both segments would
    # code shorter (still not below 64 bytes: raw either way).
    stage = [segment_bins(channel, coder)[0] for channel in inputs]
    assert alphas == [0, 0] and len(coded) >= len(residual_encode(stage, coder, [1, 1])) >= 64

    # Each coded frame with its α bits flipped (every segment's, or channel 0's alone): the
    # payload decodes to something else, and the frame, its bytes changed under the same
    # check, is not read (the check no longer holds).
    for number in (0, 1, 3):
        item, _, rebuilt, bins, body, alphas = sent[number]
        samples = len(bins[0])
        head = item[:len(item) - 2 - len(body)]
        for flips in ([1 - a for a in alphas], [1 - alphas[0]] + alphas[1:]):
            payload = residual_encode(bins, coder, flips)
            assert payload != body and len(payload) < 2 * samples * channels
            assert residual_decode(payload, samples, channels, coder) == (flips, bins)
            assert decode_bounded_payload(payload, samples, channels, coder) != rebuilt
            flags = 0 if number == 0 else SATURATED if number == 1 else END
            if number == 3:
                damaged = length_prefix(3 + len(payload)) + head[-3:] + payload + item[-2:]
                assert read_bounded_end_frame(damaged, window, windows_per_frame, channels,
                                              frame=number, frame_flags=flags,
                                              **common) is None
            else:
                damaged = length_prefix(len(payload)) + payload + item[-2:]
                assert read_entropy_frame(damaged, m * channels, frame=number,
                                          frame_flags=flags, **common) is None

    # Frame 1 carries octave-coded bins (|symbol| ≥ 16) with ≤ 8 raw bits and with > 8.
    octaves = [abs(q).bit_length() - 1 for b in sent[1][3] for q in b if abs(q) >= OCTAVE]
    assert any(o <= 8 for o in octaves) and any(o > 8 for o in octaves), octaves
    assert all(sent[k][1] for k in (0, 1, 3)), "frames 0, 1 and 3 coded"
    assert saturated(frames[1][0]) and not any(saturated(s) for s, _, _ in frames[2:] + [last])
    return items


# Latent codes in bounded sessions ("With latent codes", version 9; "The integer decoder").

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
INT8_RANGE = (-128, 127)       # a hidden layer's outputs
CODE_RANGE = (I16_MIN, I16_MAX)  # the last layer's outputs


def sat32(v):
    return min(max(v, I32_MIN), I32_MAX)


def doubling_high_mul(a, b):
    """a · b / 2^31 rounded to the nearest, a half up: (a·b + nudge) / 2^31 truncated toward
    zero, nudge = 2^30 when a·b ≥ 0 else 1 − 2^30; a = b = −2^31 gives 2^31 − 1."""
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(v) >> 31
    return q if v >= 0 else -q


def divide_by_pot(x, e):
    """x / 2^e rounded half away from zero: (x >> e) + 1 when the remainder x & (2^e − 1)
    exceeds (2^e − 1) >> 1, plus 1 more when x < 0."""
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (x < 0))


def requantize(x, multiplier, shift):
    """x · M · 2^shift / 2^31 as the spec computes it: x · 2^max(shift, 0) saturated to i32,
    doubling_high_mul by M, then divide_by_pot by max(−shift, 0)."""
    assert I32_MIN <= x <= I32_MAX and 1 << 30 <= multiplier <= I32_MAX and -31 <= shift <= 31
    return divide_by_pot(doubling_high_mul(sat32(x << max(shift, 0)), multiplier), max(-shift, 0))


class DenseLayer:
    """One dense layer of an integer decoder: weights[o][i] (int8, or i16 when wide), bias[o]
    (i32), input zero point, output zero point, ReLU or not, and per output M[o] and
    shift[o]."""

    def __init__(self, weights, bias, zp_in, zp_out, relu, multipliers, shifts):
        self.weights, self.bias, self.zp_in, self.zp_out = weights, bias, zp_in, zp_out
        self.relu, self.multipliers, self.shifts = relu, multipliers, shifts

    def output(self, acc, o, last):
        """Output o of its accumulator acc (it fits i32: checked): clamp(requantize(acc) +
        zp_out) to the layer's range: i16 for the last layer, int8 otherwise, and from zp_out
        up with ReLU."""
        assert I32_MIN <= acc <= I32_MAX, "the accumulator fits i32"
        lo, hi = CODE_RANGE if last else INT8_RANGE
        if self.relu:
            lo = max(lo, self.zp_out)
        y = sat32(requantize(acc, self.multipliers[o], self.shifts[o]) + self.zp_out)
        return min(max(y, lo), hi)

    def run(self, x, last):
        """acc = bias[o] + Σ_i w[o][i] · (x_i − zp_in), then its output."""
        out = []
        for o, (row, b) in enumerate(zip(self.weights, self.bias)):
            assert len(row) == len(x)
            out.append(self.output(b + sum(w * (v - self.zp_in) for w, v in zip(row, x)), o, last))
        return out


class ConvLayer(DenseLayer):
    """One convolution of an integer decoder over channels-first values (in_channels channels
    of T each, channel after channel): weights[o][c][j] (K taps), a stride, zero padding P, and
    the rest as a dense layer's. Upsampled, its input is first u[c][t] = x[c][t // 2], 2T
    values per channel."""

    def __init__(self, in_channels, stride, padding, upsampled, **dense):
        super().__init__(**dense)
        self.in_channels, self.stride, self.padding = in_channels, stride, padding
        self.upsampled = upsampled

    def run(self, x, last):
        """Output o at t, for t < (T + 2P − K) / stride + 1, channel after channel:
        acc = bias[o] + Σ_c Σ_j w[o][c][j] · (x[c][t·stride + j − P] − zp_in) over the taps
        inside 0 ≤ t·stride + j − P < T (the padding adds nothing), then its output."""
        c_in = self.in_channels
        t_len = len(x) // c_in
        assert t_len * c_in == len(x)
        xs = [x[c * t_len:(c + 1) * t_len] for c in range(c_in)]
        if self.upsampled:
            xs = [[v for v in channel for _ in range(2)] for channel in xs]
            t_len *= 2
        taps = len(self.weights[0][0])
        out_len = (t_len + 2 * self.padding - taps) // self.stride + 1
        out = []
        for o, (w, b) in enumerate(zip(self.weights, self.bias)):
            assert len(w) == c_in and all(len(row) == taps for row in w)
            for t in range(out_len):
                at = [(c, j, t * self.stride + j - self.padding) for c in range(c_in)
                      for j in range(taps)]
                acc = b + sum(w[c][j] * (xs[c][i] - self.zp_in) for c, j, i in at
                              if 0 <= i < t_len)
                out.append(self.output(acc, o, last))
        return out


class IntegerDecoder:
    """A model's integer decoder ("The integer decoder"): dense and conv layers, then an output stage
    per channel c (offset[c], M[c], shift[c]) to device counts."""

    def __init__(self, layers, window, channels, offsets, multipliers, shifts):
        self.layers, self.window, self.channels = layers, window, channels
        self.offsets, self.multipliers, self.shifts = offsets, multipliers, shifts

    def decode(self, codes):
        """A window's samples per channel ([c][t]) from its codes: the layers in turn (the
        codes the first one's input), the last one's W × C values channel after channel,
        each to clamp(requantize(v, M[c], shift[c]) + offset[c]) (the sum saturated to i32)."""
        x = list(codes)
        for i, layer in enumerate(self.layers):
            x = layer.run(x, last=i == len(self.layers) - 1)
        w = self.window
        assert len(x) == w * self.channels
        return [[clamp16(sat32(requantize(v, self.multipliers[c], self.shifts[c])
                               + self.offsets[c])) for v in x[c * w:(c + 1) * w]]
                for c in range(self.channels)]

    def bases(self, codes, k, m):
        """The bases b_t of a frame's m samples per channel ([c][t]) from the codes of its
        ⌈m / window⌉ windows (k per window): window w's rebuild gives samples w·window … of
        each channel, a last window's beyond m left out."""
        windows = -(-m // self.window)
        assert len(codes) == windows * k
        out = [[] for _ in range(self.channels)]
        for w in range(windows):
            for c, samples in enumerate(self.decode(codes[w * k:(w + 1) * k])):
                out[c] += samples
        return [b[:m] for b in out]


def check_integer_arithmetic():
    """The requantization by hand: rounding half away from zero at each step."""
    assert doubling_high_mul(1 << 30, 1 << 30) == 1 << 29
    # ±1.5 and ±0.5: halves go up (the nudge of a negative product is 1 − 2^30, not −2^30).
    assert doubling_high_mul(3, 1 << 30) == 2 and doubling_high_mul(-3, 1 << 30) == -1
    assert doubling_high_mul(1, 1 << 30) == 1 and doubling_high_mul(-1, 1 << 30) == 0
    assert doubling_high_mul(I32_MIN, I32_MIN) == I32_MAX
    assert [divide_by_pot(x, 2) for x in (5, 6, 7, -5, -6, -7)] == [1, 2, 2, -1, -2, -2]
    assert divide_by_pot(123, 0) == 123
    assert requantize(1000, 1 << 30, 0) == 500 and requantize(1000, 1 << 30, -2) == 125
    # Two roundings: 1001 · ½ = 500.5 → 501, / 2 = 250.5 → 251; −500.5 → −500, / 2 → −250.
    assert requantize(1001, 1 << 30, -1) == 251 and requantize(-1001, 1 << 30, -1) == -250
    # 2^30 · 4 saturates to 2^31 − 1 first; half of it, 2^30 − ½, goes up.
    assert requantize(1 << 30, 1 << 30, 2) == 1 << 30


def code_groups(codes, tables):
    """The symbols of a frame's codes in reading order, one group per code, as an entropy-coded
    frame's payload sends them (the class symbol, if any, ahead of each window's first code):
    put_by_hand(code_groups(codes, tables)) is rans_encode(codes, tables)."""
    tables = table_set(tables)
    k = tables.k
    values = tables.values(codes)
    groups = []
    for j, v in enumerate(values):
        c = cheapest_class(tables, values, j // k)
        group = [tables.classes.sym(c)] if j % k == 0 and tables.classes is not None else []
        groups.append(group + symbols_of(v, tables.table(j, c)))
    assert put_by_hand(groups) == rans_encode(codes, tables)
    return groups


def latent_bounded_payload(channels, codes, tables, decoder, coder):
    """The sender's payload of a bounded frame with latent codes: its samples (one list per
    channel, m each) and its windows' codes. The bases from the codes, each segment coded
    against them as its α chooses, and the codes' symbols then the residual values in one
    rANS stream; raw samples (as a receiver of the coded form rebuilds them) when that is not
    shorter than 2N. Returns (payload, sent coded?, coded length, rebuilt, bins, alphas,
    bases)."""
    m, count = len(channels[0]), len(channels)
    bases = decoder.bases(codes, table_set(tables).k, m)
    loops = [choose_alpha(channel, coder, base) for channel, base in zip(channels, bases)]
    alphas, bins, rebuilt = ([loop[i] for loop in loops] for i in range(3))
    for channel, xs in zip(channels, rebuilt):
        assert all(abs(s - x) <= coder.bound for s, x in zip(channel, xs)), "within E′"
    coded = put_by_hand(code_groups(codes, tables) + residual_groups(bins, coder, alphas))
    sent_coded = len(coded) < 2 * m * count
    payload = coded if sent_coded else i16_samples(rebuilt)
    back = decode_latent_bounded_payload(payload, m, count, tables, decoder, coder)
    assert back == rebuilt, "a receiver rebuilds the sender's rebuilt samples"
    return payload, sent_coded, len(coded), rebuilt, bins, alphas, bases


def decode_latent_bounded_payload(payload, m, channels, tables, decoder, coder):
    """What a receiver holding the model rebuilds from a bounded payload with latent codes: 2N
    bytes, the samples raw; fewer, the codes of the ⌈m / window⌉ windows read first (as an
    entropy-coded frame's: class symbols, escapes, predicted latents), their bases, then the
    residual values and the samples rebuilt on the bases; None if not valid."""
    n = m * channels
    if len(payload) >= 2 * n:
        return decode_bounded_payload(payload, m, channels, coder)
    tables = table_set(tables)
    reader = WordReader(payload)
    if not reader.valid:
        return None
    values, c = [], 0
    for j in range(-(-m // decoder.window) * tables.k):
        if j % tables.k == 0 and tables.classes is not None:
            c = reader.value(tables.classes)
            if c is None or not 0 <= c < tables.class_count:
                return None
        v = reader.value(tables.table(j, c))
        if v is None:
            return None
        values.append(v)
    codes = tables.codes(values)
    read = read_residuals(reader, m, channels, coder, lambda reason: None)
    if read is None:
        return None
    bases = decoder.bases(codes, tables.k, m)
    return [segment_samples(b, coder, adaptive=adapts(a), base=base)
            for a, b, base in zip(*read, bases)]


def deviation(t, c):
    """Vector 7's samples: the base plus ((5t + 3c) mod 15) − 7, t the sample's index in its
    frame, c its channel."""
    return (5 * t + 3 * c) % 15 - 7


def dense_decoder(window, channels):
    """Vector 7's integer decoder: 2 codes (zero point 4) → 3 (int8, ReLU, zero point −128) →
    16 values (i16 weights), channel 0's 8 then channel 1's, then the output stage."""
    hidden = DenseLayer(weights=[[90, -40], [7, 127], [-128, 33]], bias=[-300, 25, 4000],
                        zp_in=4, zp_out=-128, relu=True,
                        multipliers=[1 << 30, 1_700_000_000, 2_100_000_000], shifts=[-2, -5, -9])
    wide = [(i * 2731) % 20001 - 10000 for i in range(48)]
    last = DenseLayer(weights=[wide[3 * o:3 * o + 3] for o in range(16)],
                      bias=[i * 1000 - 7000 for i in range(16)], zp_in=-128, zp_out=0,
                      relu=False, multipliers=[1_300_000_000] * 16, shifts=[0] * 16)
    return IntegerDecoder([hidden, last], window, channels, offsets=[1000, -30000],
                          multipliers=[1 << 30, 2_000_000_000], shifts=[-3, 2])


def conv_decoder(window, channels):
    """Vector 8's integer decoder, as a conv model's: 2 codes (zero point 4) → 8 (int8, ReLU,
    zero point −100) read as 2 channels of 4, upsampled to 2 of 8 and convolved (kernel 3,
    stride 1, padding 1, i16 weights) to 2 channels of 8, then vector 7's output stage."""
    hidden = DenseLayer(weights=[[90, -40], [7, 127], [-128, 33], [64, 64], [-5, 100],
                                 [120, -120], [1, 2], [-77, 50]],
                        bias=[-300, 25, 4000, 0, 900, -2500, 60, 7], zp_in=4, zp_out=-100,
                        relu=True,
                        multipliers=[1 << 30, 1_700_000_000, 2_100_000_000, 1 << 30,
                                     1_500_000_000, 1 << 30, 2_000_000_000, 1 << 30],
                        shifts=[-2, -5, -9, -1, -3, -4, -6, 0])
    wide = [(i * 2731) % 20001 - 10000 for i in range(12)]
    last = ConvLayer(in_channels=2, stride=1, padding=1, upsampled=True,
                     weights=[[wide[(2 * o + c) * 3:(2 * o + c) * 3 + 3] for c in range(2)]
                              for o in range(2)],
                     bias=[-7000, 3000], zp_in=-100, zp_out=0, relu=False,
                     multipliers=[1_300_000_000, 1_900_000_000], shifts=[-10, -11])
    return IntegerDecoder([hidden, last], window, channels, offsets=[1000, -30000],
                          multipliers=[1 << 30, 2_000_000_000], shifts=[-3, 2])


def golden_7(report=None):
    return latent_bounded_vector(dense_decoder, 6, report)


def golden_8(report=None):
    return latent_bounded_vector(conv_decoder, 7, report)


def latent_bounded_vector(make_decoder, stream_id, report):
    """Vectors 7 and 8: a bounded session with latent codes, the residuals against the bases
    the decoder make_decoder(window, channels) rebuilds from them."""
    check_integer_arithmetic()
    common = dict(stream_id=stream_id, session=0x090A)
    window, windows_per_frame, header_interval, channels, k = 8, 2, 64, 2, 2
    coder = golden_5_coder()
    # The codes' tables: latent 0 `0 ..= 8`, latent 1 `-3 ..= 3`; no prediction, no classes.
    tables = [Table(0, [16, 64, 256, 800, 1824, 800, 256, 64, 16]),
              Table(-3, [32, 256, 1024, 1472, 1024, 256, 32])]
    decoder = make_decoder(window, channels)
    # (codes, samples per channel) of frame 0 (2 whole windows) and of frame 1, the last (END):
    # 11 samples per channel, so 2 windows, the second cut to 3 samples.
    frames = [([4, 1, 6, -2], 16), ([2, 0, 8, 3], 11)]
    items = [header(flags=RESTART | ENTROPY_CODED | BOUNDED, model_id=MODEL_ID,
                    channels=channels, codes_per_window=k, window=window,
                    windows_per_frame=windows_per_frame, header_interval=header_interval,
                    frame=0, start_sample=0, **common)]
    assert items[0][3] & 0x07 == 0x07 and items[0][11] == k
    m_whole = windows_per_frame * window
    for number, (codes, m) in enumerate(frames):
        is_last = number == len(frames) - 1
        bases = decoder.bases(codes, k, m)
        samples = [[clamp16(b + deviation(t, c)) for t, b in enumerate(base)]
                   for c, base in enumerate(bases)]
        flags = SATURATED if saturated(samples) else 0
        payload, sent_coded, coded_len, rebuilt, bins, alphas, _ = latent_bounded_payload(
            samples, codes, tables, decoder, coder)
        assert sent_coded, "both frames coded"
        if is_last:
            item = entropy_frame_bytes(u24(m) + payload, frame=number, frame_flags=flags | END,
                                       **common)
            read = read_bounded_end_frame(item, window, windows_per_frame, channels,
                                          frame=number, frame_flags=flags | END, **common)
            assert read == (m, payload, len(item))
            length, size = read_length(item, m_whole * channels, last=True)
        else:
            item = entropy_frame_bytes(payload, frame=number, frame_flags=flags, **common)
            read = read_entropy_frame(item, m * channels, frame=number, frame_flags=flags,
                                      **common)
            assert read == (payload, len(item))
            length, size = read_length(item, m * channels)
        back = decode_latent_bounded_payload(read[1] if is_last else read[0], m, channels,
                                             tables, decoder, coder)
        assert back == rebuilt
        assert all(abs(s - x) <= 2 for ch, xs in zip(samples, back) for s, x in zip(ch, xs))
        # The codes are what the payload begins with: without them (the residuals alone, from
        # bases of 0) the samples come back otherwise.
        assert decode_bounded_payload(payload, m, channels, coder) != rebuilt
        if report is not None:
            report.append((number, sent_coded, coded_len, length, size, len(item),
                           flags | (END if is_last else 0),
                           (f" samples={m}" if is_last else "") + f" α={alphas}"
                           + f" bases={bases}"))
        items.append(item)
    return items


def golden_9(report=None):
    """A bounded session in blocks of B = 16: vector 5's coder, one channel, frames of 40
    samples (window 8, 5 windows per frame), each segment three blocks (16, 16 and 8), a calm
    stretch and a busy one in one frame, then a last frame of 21 samples."""
    common = dict(stream_id=8, session=0x0B0C)
    five = golden_5_coder()
    coder = ResidualCoder(bound=2, coefficients=five.coefficients, order=five.order,
                          step=five.step, class_bounds=five.class_bounds, tables=five.tables,
                          block=16)
    window, windows_per_frame, header_interval, channels = 8, 5, 64, 1
    # 40 samples: 20 of a slow ramp, 20 of ±(90 + 37t mod 61), then 21 of a step.
    calm_busy = [100 + 2 * t for t in range(20)] + \
        [(-1) ** t * (90 + (37 * t) % 61) for t in range(20)]
    step = [0] * 10 + [500] * 11
    items = [header(flags=RESTART | ENTROPY_CODED | BOUNDED, model_id=MODEL_ID,
                    channels=channels, codes_per_window=0, window=window,
                    windows_per_frame=windows_per_frame, header_interval=header_interval,
                    frame=0, start_sample=0, **common)]
    item, sent_coded, coded_len, rebuilt, bins, alphas = bounded_frame(
        [calm_busy], coder, frame=0, frame_flags=0, **common)
    assert sent_coded
    classes = [coder.block_class(bins[0][s:s + n]) for s, n in blocks(40, 16)]
    assert classes[0] != classes[2], "the calm and the busy blocks take different classes"
    body, _ = read_entropy_frame(item, 40, frame=0, frame_flags=0, **common)
    assert decode_bounded_payload(body, 40, channels, coder) == rebuilt
    # In blocks of 32 the same frame is other bytes.
    assert bounded_frame([calm_busy], five, frame=0, frame_flags=0, **common)[0] != item
    items.append(item)
    last, last_coded, last_len, last_rebuilt, _, last_alphas = bounded_end_frame(
        [step], coder, window, windows_per_frame, frame=1, frame_flags=0, **common)
    assert last_coded
    read = read_bounded_end_frame(last, window, windows_per_frame, channels, frame=1,
                                  frame_flags=END, **common)
    assert read[0] == 21 and decode_bounded_payload(read[1], 21, channels, coder) == last_rebuilt
    items.append(last)
    for xs, ys in ((calm_busy, rebuilt[0]), (step, last_rebuilt[0])):
        assert all(abs(x - y) <= 2 for x, y in zip(xs, ys))
    if report is not None:
        report.append((0, sent_coded, coded_len, 0, 0, len(item), 0,
                       f" α={alphas} classes={classes}"))
        report.append((1, last_coded, last_len, 0, 0, len(last), END, f" samples=21 α={last_alphas}"))
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
    reports = {3: [], 4: [], 5: [], 6: [], 7: [], 8: [], 9: []}
    vectors = {"golden-1": hex_lines(golden_1()), "golden-2": hex_lines(golden_2()),
               "golden-3": hex_lines(golden_3(reports[3])),
               "golden-4": hex_lines(golden_4(reports[4])),
               "golden-5": hex_lines(golden_5(reports[5])),
               "golden-6": hex_lines(golden_6(reports[6])),
               "golden-7": hex_lines(golden_7(reports[7])),
               "golden-8": hex_lines(golden_8(reports[8])),
               "golden-9": hex_lines(golden_9(reports[9]))}
    for name, lines in vectors.items():
        print(name)
        print("\n".join(lines))
    for vector, report in reports.items():
        print(f"vector {vector} frames (frame: sent, coded payload bytes, len, len bytes, frame "
              "bytes, frame_flags; an END frame's samples and windows; vector 5: each "
              "channel's α; vector 6: each window's class):")
        for number, sent_coded, coded_len, length, size, total, flags, extra in report:
            print(f"  frame {number}: {'coded' if sent_coded else 'raw  '} "
                  f"coded={coded_len:2d} len={length:2d} ({size} byte) frame={total:2d} bytes "
                  f"frame_flags={flags}{extra}")
    if "--write" in sys.argv[1:]:
        write_spec(vectors)


if __name__ == "__main__":
    main()
