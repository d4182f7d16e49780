"""CRC-32C (Castagnoli) and TFRecord's masked CRC, in pure Python (Python >= 3.8).

A compiled CRC-32C is used where the host happens to have one (google_crc32c or crc32c);
otherwise slicing-by-8 folded into four 16-bit tables, the fastest table layout for
CPython found here (see tests/bench/bench_tfevents.py).
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
