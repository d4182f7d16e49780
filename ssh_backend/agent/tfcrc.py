"""CRC-32C (Castagnoli) and TFRecord's masked CRC, in pure Python (Python >= 3.8).

Two forms: ``crc32c`` for one buffer (slicing-by-8 folded into four 16-bit tables, or a
compiled CRC-32C where the host happens to have one), and ``failing``, which checks the
stored CRC of many records of one length at once, a column of bytes at a time, so the
Python loop runs per byte position instead of per byte (see tests/bench/bench_tfevents.py).
"""

import struct

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _byte_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


T0 = _byte_table()
WIDE = []  # four 65536-entry tables, built on first use (about 10 MB)


def wide_tables():
    """Slicing-by-8 folded into four 16-bit tables: four look-ups per 8 bytes. In
    CPython the cost is the number of operations, not the table size, so this runs
    about 1.7 times as fast as classic slicing-by-8."""
    if not WIDE:
        tables = [T0]
        for _ in range(7):
            prev = tables[-1]
            tables.append([(prev[i] >> 8) ^ T0[prev[i] & 0xFF] for i in range(256)])
        t = tables
        WIDE.extend([
            [t[7][i & 0xFF] ^ t[6][i >> 8] for i in range(65536)],
            [t[5][i & 0xFF] ^ t[4][i >> 8] for i in range(65536)],
            [t[3][i & 0xFF] ^ t[2][i >> 8] for i in range(65536)],
            [t[1][i & 0xFF] ^ t[0][i >> 8] for i in range(65536)],
        ])
    return WIDE


_PAIRS = struct.Struct("<II")
_U32 = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")
HEADER = 12  # a TFRecord's uint64 length + uint32 masked crc of it
FOOTER = 4  # uint32 masked crc of the data


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of ``data``, pure Python."""
    crc ^= 0xFFFFFFFF
    whole = len(data) & ~7
    if whole:
        ta, tb, tc, td = WIDE or wide_tables()
        for lo, hi in _PAIRS.iter_unpack(data[:whole]):
            lo ^= crc
            crc = ta[lo & 0xFFFF] ^ tb[lo >> 16] ^ tc[hi & 0xFFFF] ^ td[hi >> 16]
    t0 = T0
    for byte in data[whole:]:
        crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask(crc):
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def masked_crc(data):
    return mask(crc32c(data))


def _load_fast_crc():
    """A compiled CRC-32C where the host happens to have one; else the table above."""
    try:
        import google_crc32c  # type: ignore
        return google_crc32c.value
    except Exception:
        pass
    try:
        import crc32c as _crc32c_mod  # type: ignore
        return _crc32c_mod.crc32c
    except Exception:
        return None


FAST_CRC = _load_fast_crc()


def masked(data):
    return mask(FAST_CRC(bytes(data)) if FAST_CRC is not None else crc32c(data))


# Checking many records at once. Without its initial value and final xor, CRC-32C is
# linear: the CRC of a message is the xor, over its bytes, of what each byte contributes
# given how many bytes follow it. POSITION[k] holds that contribution for a byte with k
# bytes after it, as four 256-byte maps (one per byte of the CRC) for bytes.translate.
# Stacking records of one length as the rows of a matrix, one slice with a step picks a
# byte position of every record, translate maps it, and int.from_bytes turns it into an
# integer so one xor adds the position in for all records: about 4 C calls per byte
# position, whatever the number of records. The tables cost 1.2 kB per position.
POSITION = []
MAX_VECTOR_LENGTH = 1024  # longer records are rare (graphs, images): checked one by one
MIN_VECTOR_ROWS = 16  # below this, the fixed cost per position outweighs the loop
_LAST = []  # contributions of the deepest position built so far, as 256 ints
_PLANES = struct.Struct("<256I")
_UNIFORM = {}  # (length of record data) -> CRC of that many zero bytes


def _position_tables(count):
    while len(POSITION) < count:
        row = [(v >> 8) ^ T0[v & 0xFF] for v in _LAST] if _LAST else list(T0)
        _LAST[:] = row
        packed = _PLANES.pack(*row)
        POSITION.append((packed[0::4], packed[1::4], packed[2::4], packed[3::4]))
    return POSITION


def _lanes(rows, pattern):
    """An integer with ``pattern`` in each of ``rows`` 64-bit lanes."""
    return int.from_bytes(struct.pack("<Q", pattern) * rows, "little")


def failing(matrix, stride, at, length):
    """Row numbers of ``matrix`` (rows of ``stride`` bytes) whose bytes ``at`` to
    ``at + length`` do not have the masked CRC-32C stored as a uint32 right after them."""
    rows = len(matrix) // stride
    if not rows:
        return []
    tables = _position_tables(length)
    from_bytes = int.from_bytes
    a0 = a1 = a2 = a3 = 0
    for j in range(length):
        column = matrix[at + j::stride]
        t0, t1, t2, t3 = tables[length - 1 - j]
        a0 ^= from_bytes(column.translate(t0), "little")
        a1 ^= from_bytes(column.translate(t1), "little")
        a2 ^= from_bytes(column.translate(t2), "little")
        a3 ^= from_bytes(column.translate(t3), "little")
    # Gather each record's CRC into a 64-bit lane, so masking (a rotation and an add
    # whose carry stays in the lane's spare high half) runs on all of them at once.
    wide = bytearray(8 * rows)
    wide[0::8] = a0.to_bytes(rows, "little")
    wide[1::8] = a1.to_bytes(rows, "little")
    wide[2::8] = a2.to_bytes(rows, "little")
    wide[3::8] = a3.to_bytes(rows, "little")
    uniform = _UNIFORM.get(length)
    if uniform is None:  # the initial value and final xor: the same for every row
        uniform = 0xFFFFFFFF
        for _ in range(length):  # byte by byte: no need for the wide tables here
            uniform = T0[uniform & 0xFF] ^ (uniform >> 8)
        uniform = _UNIFORM[length] = uniform ^ 0xFFFFFFFF
    crc = from_bytes(wide, "little") ^ _lanes(rows, uniform)
    crc = ((crc >> 15) & _lanes(rows, 0x1FFFF)) | ((crc << 17) & _lanes(rows, 0xFFFE0000))
    crc = (crc + _lanes(rows, 0xA282EAD8)) & _lanes(rows, 0xFFFFFFFF)
    stored = bytearray(8 * rows)
    for k in range(4):
        stored[k::8] = matrix[at + length + k::stride]
    diff = crc ^ from_bytes(stored, "little")
    if not diff:
        return []
    lanes = diff.to_bytes(8 * rows, "little")
    clean = bytes(8)
    return [row for row in range(rows) if lanes[8 * row:8 * row + 8] != clean]


def resync(buf, pos):
    """The first offset at or after ``pos`` holding a header whose length checksum is
    right, or None. A false match has odds of 1 in 2**32 per position."""
    last = len(buf) - HEADER
    while pos <= last:
        if masked(buf[pos:pos + 8]) == _U32.unpack_from(buf, pos + 8)[0]:
            return pos
        pos += 1
    return None


def checked_run(buf, pos, n, limit, verify):
    """Check the records from ``pos`` in bulk, trusting their lengths: ({offset: data
    length} of the records whose header, and data when ``verify``, checksums hold; the
    offset where the run stops). The run stops at an incomplete record, after ``limit``
    records, or at the first bad header (lengths past it mean nothing). Records not in
    the set, such as lengths too rare to be worth a bulk check, are for the one-by-one
    path."""
    groups = {}
    count = 0
    longest = MAX_VECTOR_LENGTH
    unpack = _LENGTH.unpack_from
    while count < limit and pos + HEADER <= n:
        length = unpack(buf, pos)[0]
        end = pos + HEADER + length + FOOTER
        if end > n:
            break
        if length <= longest:
            group = groups.get(length)
            if group is None:
                group = groups[length] = []
            group.append(pos)
        count += 1
        pos = end
    stop = pos
    good = {}
    for length, starts in groups.items():
        if len(starts) < MIN_VECTOR_ROWS:
            continue
        stride = HEADER + length + FOOTER
        matrix = b"".join([buf[at:at + stride] for at in starts])
        bad = failing(matrix, stride, 0, 8)
        if bad:
            stop = min(stop, starts[bad[0]])
        if verify:
            bad += failing(matrix, stride, HEADER, length)
        if bad:
            skip = set(bad)
            starts = [at for row, at in enumerate(starts) if row not in skip]
        good.update(dict.fromkeys(starts, length))
    if stop < pos:
        good = {at: length for at, length in good.items() if at < stop}
    return good, stop
