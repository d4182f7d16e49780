"""Read scalars and hyper-parameters from TensorBoard event files, stdlib only.

A file is a sequence of TFRecords: uint64 length, masked CRC-32C of the length bytes,
``length`` bytes of a serialised ``Event`` protobuf, masked CRC-32C of those bytes. The
Event is decoded by hand: wall_time (1, double), step (2, int64) and summary (5), whose
values (1) carry a tag (1) and either simple_value (2, float — PyTorch's SummaryWriter) or
a scalar tensor (8 — TF2's ``tf.summary.scalar``); the hparams plugin's
``_hparams_/session_start_info`` metadata becomes params. Everything else is skipped.

``read_records`` never raises on bad input: a corrupt or unreadable record becomes a
warning naming the file and byte offset, and reading resumes at the next valid record. A
record that is not complete yet (the writer is mid-write) is left for the next call.
Checksums are checked in bulk where many records share a length (tfcrc.checked_run), one
by one otherwise. Python >= 3.8.
"""

import struct

from tfcrc import FOOTER, HEADER, checked_run, masked, resync

# Records larger than this are skipped unparsed (graph defs, images: never scalars).
MAX_PARSE_BYTES = 8 * 1024 * 1024

_HEAD = struct.Struct("<III")  # length low, high, its masked crc
_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


def _varint(buf, pos):
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _signed64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf, pos, end):
    """(field number, wire type, value) of each field in buf[pos:end]; the value of a
    length-delimited field is its (start, end) span."""
    while pos < end:
        key, pos = _varint(buf, pos)
        kind = key & 7
        if kind == 0:
            value, pos = _varint(buf, pos)
        elif kind == 1:
            value = pos
            pos += 8
        elif kind == 2:
            size, pos = _varint(buf, pos)
            value = (pos, pos + size)
            pos += size
        elif kind == 5:
            value = pos
            pos += 4
        else:
            raise ValueError("unsupported wire type %d" % kind)
        if pos > end:
            raise ValueError("field runs past its message")
        yield key >> 3, kind, value


# TensorFlow DataType → (struct format of one element in tensor_content, size).
_CONTENT = {1: ("<f", 4), 2: ("<d", 8), 3: ("<i", 4), 4: ("<B", 1), 5: ("<h", 2),
            6: ("<b", 1), 9: ("<q", 8), 10: ("<?", 1), 17: ("<H", 2), 19: ("<e", 2),
            22: ("<I", 4), 23: ("<Q", 8)}


def _packed(buf, kind, value, fmt):
    """Elements of a repeated numeric field, packed or not."""
    if kind == 2:
        start, end = value
        if fmt == "varint":
            out = []
            while start < end:
                item, start = _varint(buf, start)
                out.append(item)
            return out
        return [v[0] for v in struct.iter_unpack(fmt, bytes(buf[start:end]))]
    if fmt == "varint":
        return [value]
    return [struct.unpack_from(fmt, buf, value)[0]]


def _tensor_scalar(buf, start, end):
    """The single numeric value of a scalar TensorProto, or None for anything else."""
    dtype = 1
    count = 1
    content = None
    values = []
    for number, kind, value in _fields(buf, start, end):
        if number == 1 and kind == 0:
            dtype = value
        elif number == 2 and kind == 2:
            for dim_no, dim_kind, dim in _fields(buf, value[0], value[1]):
                if dim_no == 2 and dim_kind == 2:
                    size = 1
                    for f_no, f_kind, f_val in _fields(buf, dim[0], dim[1]):
                        if f_no == 1 and f_kind == 0:
                            size = _signed64(f_val)
                    count *= size
        elif number == 4 and kind == 2:
            content = bytes(buf[value[0]:value[1]])
        elif number == 5:
            values += _packed(buf, kind, value, "<f")
        elif number == 6:
            values += _packed(buf, kind, value, "<d")
        elif number in (7, 10, 16, 17):
            values += [_signed64(v) for v in _packed(buf, kind, value, "varint")]
        elif number == 11:
            values += _packed(buf, kind, value, "varint")
        elif number == 13:  # half_val: the 16 bits of each half in an int32
            halves = _packed(buf, kind, value, "varint")
            values += [struct.unpack("<e", struct.pack("<H", h & 0xFFFF))[0] for h in halves]
    if count != 1:
        return None
    if content is not None:
        if dtype == 14:  # bfloat16: the high half of a float32
            if len(content) != 2:
                return None
            return struct.unpack("<f", b"\0\0" + content)[0]
        spec = _CONTENT.get(dtype)
        if spec is None or len(content) != spec[1]:
            return None
        return float(struct.unpack(spec[0], content)[0])
    if dtype not in _CONTENT and dtype != 14:
        return None
    if len(values) != 1:
        return None
    return float(values[0])


def _hparams(buf, start, end):
    """session_start_info.hparams of an HParamsPluginData, as a plain dict."""
    params = {}
    for number, kind, value in _fields(buf, start, end):
        if number != 3 or kind != 2:
            continue
        for s_no, s_kind, entry in _fields(buf, value[0], value[1]):
            if s_no != 1 or s_kind != 2:
                continue
            key = None
            item = None
            for e_no, e_kind, e_val in _fields(buf, entry[0], entry[1]):
                if e_no == 1 and e_kind == 2:
                    key = bytes(buf[e_val[0]:e_val[1]]).decode("utf-8", "replace")
                elif e_no == 2 and e_kind == 2:
                    for v_no, v_kind, v_val in _fields(buf, e_val[0], e_val[1]):
                        if v_no == 2 and v_kind == 1:
                            item = _F64.unpack_from(buf, v_val)[0]
                        elif v_no == 3 and v_kind == 2:
                            item = bytes(buf[v_val[0]:v_val[1]]).decode("utf-8", "replace")
                        elif v_no == 4 and v_kind == 0:
                            item = bool(v_val)
            if key is not None:
                params[key] = item
    return params


_TENSOR_F32 = b"\x08\x01\x12\x00\x2a\x04"  # dtype float, shape [], one float_val
_SCALARS_METADATA = b"\x4a\x0b\x0a\x09\x0a\x07scalars"  # plugin "scalars", no content


def _summary_value(buf, start, end, out, params):
    # Fast paths for the two shapes nearly every scalar has: tag + simple_value, and
    # tag + a float32 scalar tensor without metadata (TF2 after a tag's first event).
    if buf[start] == 0x0A and buf[start + 1] < 0x80:
        after = start + 2 + buf[start + 1]
        if after + 5 == end and buf[after] == 0x15:
            out.append((bytes(buf[start + 2:after]).decode("utf-8", "replace"),
                        _F32.unpack_from(buf, after + 1)[0]))
            return
        if after + 12 == end and buf[after] == 0x42 and buf[after + 1] == 10 \
                and buf[after + 2:after + 8] == _TENSOR_F32:
            out.append((bytes(buf[start + 2:after]).decode("utf-8", "replace"),
                        _F32.unpack_from(buf, after + 8)[0]))
            return
    tag = ""
    simple = None
    tensor = None
    plugin = ""
    content = None
    for number, kind, value in _fields(buf, start, end):
        if number == 1 and kind == 2:
            tag = bytes(buf[value[0]:value[1]]).decode("utf-8", "replace")
        elif number == 2 and kind == 5:
            simple = _F32.unpack_from(buf, value)[0]
        elif number == 8 and kind == 2:
            tensor = value
        elif number == 9 and kind == 2:
            for m_no, m_kind, m_val in _fields(buf, value[0], value[1]):
                if m_no == 1 and m_kind == 2:
                    for p_no, p_kind, p_val in _fields(buf, m_val[0], m_val[1]):
                        if p_no == 1 and p_kind == 2:
                            plugin = bytes(buf[p_val[0]:p_val[1]]).decode("utf-8", "replace")
                        elif p_no == 2 and p_kind == 2:
                            content = p_val
    if plugin == "hparams":
        if tag == "_hparams_/session_start_info" and content is not None:
            params.update(_hparams(buf, content[0], content[1]))
        return
    if simple is not None:
        out.append((tag, simple))
    elif tensor is not None:
        scalar = _tensor_scalar(buf, tensor[0], tensor[1])
        if scalar is not None:
            out.append((tag, scalar))


def parse_event(data):
    """(wall_time, step, [(tag, value)], params) of one serialised Event."""
    wall = 0.0
    step = 0  # proto3 leaves a zero step out of the bytes
    values = []
    params = {}
    end = len(data)
    pos = 0
    while pos < end:
        key = data[pos]
        if key < 0x80:  # every field of an Event has a one-byte key
            pos += 1
        else:
            key, pos = _varint(data, pos)
        number = key >> 3
        kind = key & 7
        if kind == 0:
            value, pos = _varint(data, pos)
            if number == 2:
                step = _signed64(value)
        elif kind == 1:
            if number == 1:
                wall = _F64.unpack_from(data, pos)[0]
            pos += 8
        elif kind == 2:
            size, pos = _varint(data, pos)
            if number == 5:
                stop = pos + size
                if stop > end:
                    raise ValueError("summary runs past the event")
                inner = pos
                while inner < stop:  # Summary: repeated Value value = 1
                    v_key, inner = _varint(data, inner)
                    if v_key != 0x0A:
                        raise ValueError("unexpected field in a summary")
                    v_size, inner = _varint(data, inner)
                    if inner + v_size > stop:
                        raise ValueError("summary value runs past its summary")
                    _summary_value(data, inner, inner + v_size, values, params)
                    inner += v_size
            pos += size
        elif kind == 5:
            pos += 4
        else:
            raise ValueError("unsupported wire type %d" % kind)
        if pos > end:
            raise ValueError("field runs past the event")
    return wall, step, values, params


class Batch(object):
    """What one read produced: ``end`` is the offset after the last record consumed."""

    __slots__ = ("end", "params", "points", "warnings")

    def __init__(self, end):
        self.end = end
        self.points = []  # [series, step, wall_time, value]
        self.params = {}
        self.warnings = []


def _record(data, stored_crc, offset, label, prefix, batch, verify):
    if verify and masked(data) != stored_crc:
        batch.warnings.append("%s: record at byte %d fails its checksum; skipped"
                              % (label, offset))
        return
    try:
        wall, step, values, params = parse_event(data)
    except (ValueError, IndexError, struct.error, UnicodeError) as exc:
        batch.warnings.append("%s: record at byte %d is not a readable event (%s); skipped"
                              % (label, offset, exc))
        return
    for tag, value in values:
        batch.points.append([prefix + tag, step, wall, value])
    if params:
        batch.params.update(params)


def _fast_record(buf, start, end, points, names, prefix):
    """The common record, already checked, decoded inline: an Event of wall_time, step
    and a summary of one value, a simple_value or a float32 scalar tensor (with the
    scalars plugin's bare metadata or none). True when it was that (and its point is
    appended); False sends it the long way, which also reports any error."""
    if end - start < 20 or buf[start] != 0x09:
        return False
    pos = start + 9
    step = 0
    if buf[pos] == 0x10:  # step, a varint; most are under 2**21
        step = buf[pos + 1]
        pos += 2
        if step >= 0x80:
            byte = buf[pos]
            step = (step & 0x7F) | (byte & 0x7F) << 7
            pos += 1
            if byte >= 0x80:
                byte = buf[pos]
                step |= (byte & 0x7F) << 14
                pos += 1
                if byte >= 0x80:
                    try:
                        step, pos = _varint(buf, start + 10)
                    except ValueError:  # over ten bytes: the long way reports it
                        return False
                    if step >= 1 << 63:
                        step -= 1 << 64
    if pos + 6 > end or buf[pos] != 0x2A or buf[pos + 2] != 0x0A or buf[pos + 4] != 0x0A:
        return False
    tag_len = buf[pos + 5]
    value_len = buf[pos + 3]
    if buf[pos + 1] != value_len + 2 or tag_len >= 0x80:
        return False
    tag_end = pos + 6 + tag_len
    if tag_end + 5 > end:  # a tag running past the record (its last byte may end buf)
        return False
    if value_len == tag_len + 7 and tag_end + 5 == end and buf[tag_end] == 0x15:
        value = _F32.unpack_from(buf, tag_end + 1)[0]
    elif buf[tag_end] == 0x42 and buf[tag_end + 1] == 10 \
            and buf[tag_end + 2:tag_end + 8] == _TENSOR_F32 and (
                (value_len == tag_len + 14 and tag_end + 12 == end)
                or (value_len == tag_len + 27 and tag_end + 25 == end
                    and buf[tag_end + 12:end] == _SCALARS_METADATA)):
        value = _F32.unpack_from(buf, tag_end + 8)[0]
    else:
        return False
    key = buf[pos + 6:tag_end]
    series = names.get(key)
    if series is None:
        series = names[key] = prefix + key.decode("utf-8", "replace")
    points.append([series, step, _F64.unpack_from(buf, start + 1)[0], value])
    return True


def read_records(read_at, start, size, label, prefix="", max_bytes=1 << 20,
                 max_points=5000, verify=True):
    """Parse the complete records of a file from byte ``start``.

    ``read_at(offset, n)`` returns up to ``n`` bytes of the file at ``offset``; ``size`` is
    the file's size now. At most ``max_bytes`` are read (one larger record is read whole,
    or skipped unparsed past MAX_PARSE_BYTES) and reading stops after ``max_points``.
    Series are named ``prefix + tag``. Never raises for bad content.
    """
    batch = Batch(start)
    want = min(max_bytes, size - start)
    if want < HEADER:
        return batch
    buf = bytes(read_at(start, want))
    n = len(buf)
    pos = 0
    points = batch.points
    names = {}  # tag bytes → series name, decoded once per read
    good = {}
    checked_to = 0  # checked_run has looked at the records before this
    while pos + HEADER <= n and len(points) < max_points:
        if pos >= checked_to:
            good, checked_to = checked_run(buf, pos, n, max_points - len(points) + 8,
                                            verify)
        length = good.get(pos)
        if length is not None:
            data_at = pos + HEADER
            if not _fast_record(buf, data_at, data_at + length, points, names, prefix):
                _record(buf[data_at:data_at + length], 0, start + pos, label, prefix,
                        batch, False)
            pos = data_at + length + FOOTER
            continue
        lo, hi, stored = _HEAD.unpack_from(buf, pos)
        length = lo | (hi << 32)
        if masked(buf[pos:pos + 8]) != stored:  # checked_run did not vouch for it
            found = resync(buf, pos + 1)
            skip_to = found if found is not None else n - HEADER + 1
            batch.warnings.append("%s: corrupt record header at byte %d; skipped %d bytes%s"
                                  % (label, start + pos, skip_to - pos,
                                     " to the next valid record" if found is not None else ""))
            pos = skip_to
            continue
        total = HEADER + length + FOOTER
        if pos + total <= n:
            data = buf[pos + HEADER:pos + HEADER + length]
            crc = _U32.unpack_from(buf, pos + HEADER + length)[0]
            _record(data, crc, start + pos, label, prefix, batch, verify)
            pos += total
            continue
        if pos > 0 or start + total > size:
            break  # the next call starts at this record; or it is not all written yet
        # A record larger than the window, complete in the file.
        if length <= MAX_PARSE_BYTES:
            whole = read_at(start, total)
            if len(whole) < total:
                break
            _record(whole[HEADER:HEADER + length], _U32.unpack_from(whole, HEADER + length)[0],
                    start, label, prefix, batch, verify)
        pos = total
        break
    batch.end = start + pos
    return batch
