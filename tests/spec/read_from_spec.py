#!/usr/bin/env python3
"""Independent reader of an auditlog directory, written from docs/FORMAT.md alone.

Usage: read_from_spec.py LOG_DIR KEYRING_FILE [--no-records] [--checkpoint FILE]

Walks every org directory, every segment and sidecar index, checks everything
FORMAT.md says a verifier can check, and prints one JSON document on stdout:

  {"intact": bool, "finding_count": n, "orgs": {org: {"segments": [...],
   "findings": [...]}}, "findings": [...], "notes": [...]}

Each segment lists its header, its records (seq, chain hash, occurred_at and the
decoded event fields, personal data opened), its index and its findings. A
finding is something the bytes break; a note is something the spec leaves open
or the reader could not check. Exit status: 0 if no finding, 1 otherwise, 2 on
a usage error.

Python 3.11 standard library only. Section numbers (§) refer to FORMAT.md.
"""

import datetime
import hashlib
import hmac
import json
import math
import os
import re
import struct
import sys
import zlib

SEG_MAGIC = b"AUDLOGSG"
IDX_MAGIC = b"AUDLOGIX"
HEADER_LEN = 256
MIN_FRAME = 96
MAX_FRAME = 67_174_400
U64 = (1 << 64) - 1
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
ORG_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# §1: <YYYY-MM>.seg, <YYYY-MM>.<n>.seg (n >= 1, no leading zeros), same for .idx
NAME_RE = re.compile(r"^(\d{4})-(\d{2})(?:\.([1-9]\d*))?\.(seg|idx)$")
COLD_RE = re.compile(r"^(\d{4})-(\d{2})\.cold$")


def crc32(b):
    return zlib.crc32(b) & 0xFFFFFFFF


def sha256(b):
    return hashlib.sha256(b).digest()


def fmt_ts(us):
    """RFC 3339 with microseconds, UTC (as the CLI prints them)."""
    try:
        t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % t.microsecond
    except (OverflowError, ValueError):
        return None


def month_bounds(year, month):
    """[start, end) of a UTC month in µs (9999-12 ends at 10000-01-01, which datetime
    cannot hold: one day after 9999-12-31)."""
    epoch = datetime.datetime(1970, 1, 1)
    start = datetime.datetime(year, month, 1)
    if (year, month) == (9999, 12):
        end = datetime.datetime(9999, 12, 31) + datetime.timedelta(days=1) - datetime.timedelta(microseconds=1)
        end_us = (end - epoch) // datetime.timedelta(microseconds=1) + 1
    else:
        end = datetime.datetime(year + month // 12, month % 12 + 1, 1)
        end_us = (end - epoch) // datetime.timedelta(microseconds=1)
    return (start - epoch) // datetime.timedelta(microseconds=1), end_us


# ---------------------------------------------------------------- findings


class Findings:
    def __init__(self):
        self.items = []

    def add(self, kind, file, detail, offset=None, seq=None):
        f = {"kind": kind, "file": file, "detail": detail}
        if offset is not None:
            f["offset"] = offset
        if seq is not None:
            f["seq"] = seq
        self.items.append(f)
        return f


class DecodeError(Exception):
    pass


class Cursor:
    """Reads the primitive types of the conventions paragraph."""

    def __init__(self, b, pos=0, end=None):
        self.b = b
        self.pos = pos
        self.end = len(b) if end is None else end

    def take(self, n):
        if n < 0 or self.pos + n > self.end:
            raise DecodeError("need %d bytes at %d, have %d" % (n, self.pos, self.end - self.pos))
        v = self.b[self.pos : self.pos + n]
        self.pos += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def i64(self):
        return struct.unpack("<q", self.take(8))[0]

    def varint(self):
        """Unsigned LEB128 of a u32, at most 5 bytes, minimal."""
        value = 0
        for i in range(5):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i > 0 and byte == 0:
                    raise DecodeError("overlong varint at %d" % (self.pos - 1))
                if value > 0xFFFFFFFF:
                    raise DecodeError("varint exceeds u32 at %d" % (self.pos - 1))
                return value
        raise DecodeError("varint longer than 5 bytes at %d" % self.pos)

    def bytes_(self):
        return self.take(self.varint())

    def str_(self):
        raw = self.bytes_()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("invalid UTF-8 in str: %s" % e) from None

    def done(self):
        return self.pos == self.end


# ---------------------------------------------------------------- keyring (§4)


def load_keyring(path):
    if os.stat(path).st_mode & 0o077:
        raise ValueError("key file is readable or writable by group or others (§4: refused)")
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8"))
    if doc.get("format") != "auditlog-keyring" or doc.get("version") != 1:
        raise ValueError("not an auditlog-keyring version 1 file")
    keys = {}
    for org, entry in doc.get("orgs", {}).items():
        ring = {}
        for k in entry.get("keys", []):
            secret = bytes.fromhex(k["secret"])
            if len(secret) < 16:
                raise ValueError("org %s key %s: secret shorter than 16 bytes" % (org, k["id"]))
            ring[int(k["id"])] = secret
        keys[org] = ring
    return keys


# ---------------------------------------------------------------- segment header (§2.1)


def parse_link(b):
    c = Cursor(b)
    link = {
        "year": c.u16(),
        "month": c.u8(),
        "reserved0": c.u8(),
        "part": c.u16(),
        "reserved1": c.u16(),
        "count": c.u64(),
        "head": c.take(32),
    }
    return link


def link_json(link):
    if link is None:
        return None
    return {
        "segment": seg_name(link["year"], link["month"], link["part"]),
        "count": link["count"],
        "head": link["head"].hex(),
    }


def seg_name(year, month, part):
    return "%04d-%02d" % (year, month) + ("" if part == 0 else ".%d" % part)


def check_link(raw, what, fname, F):
    """Returns the link, or None if absent; reports malformed links."""
    link = parse_link(raw)
    if link["year"] == 0:
        if any(raw):
            F.add("bad_header", fname, "%s link has year 0 but non-zero bytes" % what)
        return None
    if link["reserved0"] or link["reserved1"]:
        F.add("bad_header", fname, "%s link: reserved bytes not zero" % what)
    if not (1970 <= link["year"] <= 9999 and 1 <= link["month"] <= 12):
        F.add("bad_header", fname, "%s link names an impossible month %d-%d" % (what, link["year"], link["month"]))
    return link


def parse_seg_header(h, fname, F):
    """Returns a dict of the header, or None if it must be refused."""
    if len(h) < HEADER_LEN:
        F.add("bad_header", fname, "file shorter than the 256-byte header (%d bytes)" % len(h), offset=0)
        return None
    ok = True
    c = Cursor(h)
    magic = c.take(8)
    version = c.u16()
    header_len = c.u16()
    compat = c.u32()
    incompat = c.u32()
    hash_alg, tag_alg, kid_scheme, org_len = c.u8(), c.u8(), c.u8(), c.u8()
    org_raw = c.take(64)
    year, month, r91, part, r94, ordinal, r100 = c.u16(), c.u8(), c.u8(), c.u16(), c.u16(), c.u32(), c.u32()
    first_seq = c.u64()
    created_at = c.i64()
    prev_raw = c.take(48)
    cont_raw = c.take(48)
    r216 = c.take(36)
    crc = c.u32()
    if crc32(h[:252]) != crc:
        F.add("header_crc", fname, "header CRC-32 mismatch (stored %08x, computed %08x)" % (crc, crc32(h[:252])), offset=252)
        ok = False
    if magic != SEG_MAGIC:
        F.add("bad_header", fname, "magic %r is not AUDLOGSG" % magic, offset=0)
        return None
    if version != 1:
        F.add("bad_header", fname, "format_version %d (reader knows 1)" % version, offset=8)
        return None
    if header_len != 256:
        F.add("bad_header", fname, "header_len %d, expected 256" % header_len, offset=10)
        ok = False
    if incompat != 0:
        F.add("bad_header", fname, "incompat_flags %#x set: must refuse" % incompat, offset=16)
        return None
    if (hash_alg, tag_alg, kid_scheme) != (1, 1, 1):
        F.add("bad_header", fname, "hash_alg/tag_alg/key_id_scheme %d/%d/%d, expected 1/1/1" % (hash_alg, tag_alg, kid_scheme), offset=20)
        ok = False
    if not 1 <= org_len <= 64:
        F.add("bad_header", fname, "org_len %d out of 1..=64" % org_len, offset=23)
        return None
    org = org_raw[:org_len]
    if any(org_raw[org_len:]):
        F.add("bad_header", fname, "org_id padding not zero", offset=24)
        ok = False
    if r91 or r94 or r100 or any(r216):
        F.add("bad_header", fname, "reserved header bytes not zero")
        ok = False
    if not (1970 <= year <= 9999 and 1 <= month <= 12):
        F.add("bad_header", fname, "month %d-%d out of range" % (year, month), offset=88)
        return None
    prev = check_link(prev_raw, "prev", fname, F)
    cont = check_link(cont_raw, "continues", fname, F)
    try:
        org_s = org.decode("ascii")
    except UnicodeDecodeError:
        org_s = org.decode("latin-1")
    return {
        "ok": ok,
        "org": org_s,
        "org_bytes": org,
        "year": year,
        "month": month,
        "part": part,
        "ordinal": ordinal,
        "first_seq": first_seq,
        "created_at": created_at,
        "compat_flags": compat,
        "prev": prev,
        "continues": cont,
        "genesis": sha256(h[:HEADER_LEN]),
    }


# ---------------------------------------------------------------- sealed body (§2.3)

PII_FIELDS = {1: "ip", 2: "user_agent", 3: "session_id", 4: "json"}


def parse_body(b):
    c = Cursor(b)
    flags = c.u8()
    if flags & ~0x03:
        raise DecodeError("flags %#x: undefined bits set" % flags)
    body = {"flags": flags}
    body["user_id"] = c.str_() if flags & 1 else None
    body["action"] = c.str_()
    body["resource_type"] = c.str_()
    body["resource_id"] = c.str_()
    body["trace_id"] = c.str_() if flags & 2 else None
    body["before_raw"] = c.bytes_()
    body["after_raw"] = c.bytes_()
    body["metadata_raw"] = c.bytes_()
    n = c.u8()
    if n > 32:
        raise DecodeError("pii_count %d > 32" % n)
    slots = []
    for _ in range(n):
        field = c.u8()
        if field not in PII_FIELDS:
            raise DecodeError("unknown personal-data field code %d" % field)
        slot = {"field": PII_FIELDS[field]}
        if field == 4:
            slot["pointer"] = c.str_()
        slots.append(slot)
    body["slots"] = slots
    body["pii_root"] = c.take(32) if n > 0 else None
    if not c.done():
        raise DecodeError("%d trailing bytes after the body" % (c.end - c.pos))
    return body


def parse_openings(b, n):
    """§2.4. Returns a list of n dicts {salt, value} or {commitment} (erased), and the kind."""
    if n == 0:
        if b:
            raise DecodeError("%d opening bytes for a record without personal data" % len(b))
        return [], None
    c = Cursor(b)
    kind = c.u8()
    out = []
    if kind == 0:
        seed = c.take(16)
        for i in range(n):
            salt = sha256(b"auditlog.salt.v1" + seed + bytes([i]))[:16]
            out.append({"salt": salt, "value": c.bytes_()})
    elif kind == 1:
        for _ in range(n):
            tag = c.u8()
            if tag == 0:
                salt = c.take(16)
                out.append({"salt": salt, "value": c.bytes_()})
            elif tag == 1:
                out.append({"commitment": c.take(32)})
            else:
                raise DecodeError("explicit opening tag %d (0 or 1 expected)" % tag)
    else:
        raise DecodeError("openings kind %d (0 or 1 expected)" % kind)
    if not c.done():
        raise DecodeError("%d trailing bytes after the openings" % (c.end - c.pos))
    return out, kind


MAX_JSON_DEPTH = 127


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _finite(text):
    v = float(text)
    if math.isinf(v):
        raise ValueError("number %s is outside the range of a double" % text)
    return v


def check_json_value(value, depth=0):
    """§2.3 "valid JSON": arrays and objects nested at most 127 deep, every number within
    the range of a double, no unpaired surrogate (Python's json lets those through)."""
    if isinstance(value, (list, dict)):
        if depth + 1 > MAX_JSON_DEPTH:
            raise ValueError("nested deeper than %d" % MAX_JSON_DEPTH)
        items = value if isinstance(value, list) else list(value.keys()) + list(value.values())
        for v in items:
            check_json_value(v, depth + 1)
    elif isinstance(value, str):
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise ValueError("an unpaired surrogate")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(1 << 63) <= value < (1 << 64):
            try:
                _finite(str(value))
            except OverflowError:
                raise ValueError("number outside the range of a double") from None


def parse_json_text(text):
    """A JSON text as §2.3 defines it (not its spelling: compactness is the writer's)."""
    value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    check_json_value(value)
    return value


def parse_json_field(raw, name):
    if raw == b"":
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError("%s: not UTF-8: %s" % (name, e)) from None
    try:
        return parse_json_text(text)
    except (ValueError, RecursionError) as e:
        raise DecodeError("%s: not JSON: %s" % (name, e)) from None


def pointer_tokens(ptr):
    if not ptr.startswith("/"):
        raise DecodeError("JSON pointer %r does not start with /" % ptr)
    return [t.replace("~1", "/").replace("~0", "~") for t in ptr[1:].split("/")]


def set_at_pointer(event, ptr, value):
    """Puts value at an RFC 6901 pointer rooted at the event, whatever is stored there (a
    writer stores null; §2.3 "Writer rules that readers do not check")."""
    toks = pointer_tokens(ptr)
    if toks[0] not in ("before", "after", "metadata"):
        raise DecodeError("JSON pointer %r is not under /before, /after or /metadata" % ptr)
    if len(toks) == 1:
        event[toks[0]] = value
        return
    node = event[toks[0]]
    for t in toks[1:-1]:
        node = step(node, t, ptr)
    last = toks[-1]
    if isinstance(node, dict):
        if last not in node:
            raise DecodeError("slot %r: no such member in the stored JSON" % ptr)
        node[last] = value
    elif isinstance(node, list):
        i = array_index(last, node, ptr)
        node[i] = value
    else:
        raise DecodeError("slot %r: parent is not an object or array" % ptr)


def array_index(tok, node, ptr):
    if not re.fullmatch(r"0|[1-9][0-9]*", tok) or int(tok) >= len(node):
        raise DecodeError("slot %r: bad array index %r" % (ptr, tok))
    return int(tok)


def step(node, t, ptr):
    if isinstance(node, dict) and t in node:
        return node[t]
    if isinstance(node, list):
        return node[array_index(t, node, ptr)]
    raise DecodeError("slot %r: path does not exist in the stored JSON" % ptr)


REDACTED = "[REDACTED]"


def decode_event(body, openings, kind):
    """The event fields as appended: JSON parsed, personal data put back."""
    ev = {
        "user_id": body["user_id"],
        "action": body["action"],
        "resource_type": body["resource_type"],
        "resource_id": body["resource_id"],
        "trace_id": body["trace_id"],
        "before": parse_json_field(body["before_raw"], "before"),
        "after": parse_json_field(body["after_raw"], "after"),
        "metadata": parse_json_field(body["metadata_raw"], "metadata"),
        "ip": None,
        "user_agent": None,
        "session_id": None,
    }
    pd = []
    seen = set()
    # JSON values go back in reverse slot order (§2.3): a slot nested in a later slot's
    # value is put back once that value is in place.
    json_values = []
    for slot, op in zip(body["slots"], openings):
        key = slot.get("pointer", slot["field"])
        if key in seen:
            raise DecodeError("personal-data slot %r appears twice" % key)
        seen.add(key)
        erased = "value" not in op
        if erased:
            text = None
        else:
            try:
                text = op["value"].decode("utf-8")
            except UnicodeDecodeError as e:
                raise DecodeError("personal-data value of %r is not UTF-8: %s" % (key, e)) from None
        if slot["field"] == "json":
            if erased:
                value = REDACTED  # §2.4 "an erased slot reads as [REDACTED]" (as a JSON string: not specified)
            else:
                try:
                    value = parse_json_text(text)
                except (ValueError, RecursionError) as e:
                    raise DecodeError("personal-data JSON value of %r is not JSON: %s" % (key, e)) from None
            json_values.append((slot["pointer"], value))
        else:
            ev[slot["field"]] = REDACTED if erased else text
        pd.append({"slot": key, "state": "erased" if erased else "open"})
    for ptr, value in reversed(json_values):
        set_at_pointer(ev, ptr, value)
    ev["personal_data"] = pd
    ev["openings_kind"] = kind
    return ev


def pii_root_of(openings):
    commits = []
    for op in openings:
        if "commitment" in op:
            commits.append(op["commitment"])
        else:
            commits.append(sha256(b"auditlog.pii.v1" + op["salt"] + op["value"]))
    return sha256(b"auditlog.piiroot.v1" + b"".join(commits))


# ---------------------------------------------------------------- segment walk (§2.2)


class Record:
    __slots__ = ("offset", "frame_len", "seq", "ts", "key_id", "prev", "chain", "body", "event", "tag_ok", "body_ok", "user_id")


def frame_ok_at(data, off):
    """(frame_len, crc_ok) for a frame at off, or None if frame_len is out of bounds or it overruns."""
    if off + 8 > len(data):
        return None
    flen, crc = struct.unpack_from("<II", data, off)
    if not MIN_FRAME <= flen <= MAX_FRAME or off + flen > len(data):
        return None
    return flen, crc32(data[off + 8 : off + flen]) == crc


def resync(data, start, last_seq):
    """§6.3: next offset past start holding a frame that fits, has a plausible seq and a valid CRC."""
    for off in range(start, len(data) - MIN_FRAME + 1):
        flen = struct.unpack_from("<I", data, off)[0]
        if not MIN_FRAME <= flen <= MAX_FRAME or off + flen > len(data):
            continue
        seq = struct.unpack_from("<Q", data, off + 8)[0]
        if last_seq is not None and seq <= last_seq:
            continue
        if crc32(data[off + 8 : off + flen]) == struct.unpack_from("<I", data, off + 4)[0]:
            return off
    return None


def walk_segment(path, fname, org, keys, F):
    """Reads one segment; returns (header, records, facts) with findings in F."""
    with open(path, "rb") as f:
        data = f.read()
    hdr = parse_seg_header(data[:HEADER_LEN], fname, F)
    # clean_prefix: readable records before the first unreadable stretch
    facts = {"size": len(data), "damaged": False, "torn_tail": False, "records_end": None, "clean_prefix": None}
    if hdr is None:
        facts["damaged"] = True
        return None, [], facts, data
    if hdr["org"] != org:
        F.add("bad_header", fname, "header org_id %r, directory %r" % (hdr["org"], org), offset=24)
    if hdr["part"] == 0 and hdr["first_seq"] != 0:
        F.add("bad_header", fname, "part 0 has first_seq %d (a month's seqs start at 0)" % hdr["first_seq"], offset=104)
    mstart, mend = month_bounds(hdr["year"], hdr["month"])
    org_b = hdr["org_bytes"]
    ring = keys.get(org, {})
    records = []
    off = HEADER_LEN
    expect_seq = hdr["first_seq"]
    prev_chain = hdr["genesis"]
    after_gap = False
    last_seq = None
    while off < len(data):
        fr = frame_ok_at(data, off)
        if fr is None or not fr[1]:
            facts["damaged"] = True
            if facts["clean_prefix"] is None:
                facts["clean_prefix"] = len(records)
            if fr is None:
                why = "frame_len out of 96..=67174400 or past the end of the file" if off + 4 <= len(data) else "fewer than 4 bytes left"
            else:
                why = "CRC-32 of bytes 8..frame_len does not match"
            nxt = resync(data, off + 1, last_seq)
            if nxt is None:
                facts["torn_tail"] = True
                F.add("unreadable_tail", fname, "%s; no valid record in the %d bytes after it (torn tail or damage)" % (why, len(data) - off), offset=off)
                break
            seq_here = struct.unpack_from("<Q", data, off + 8)[0] if off + 16 <= len(data) else None
            F.add("corrupt_frame", fname, "%s; bytes %d..%d unreadable, next valid record at %d" % (why, off, nxt, nxt), offset=off, seq=seq_here)
            off = nxt
            after_gap = True
            continue
        flen = fr[0]
        rec = data[off : off + flen]
        r = Record()
        r.offset, r.frame_len = off, flen
        r.seq, r.ts, r.key_id = struct.unpack_from("<QqI", rec, 8)
        r.prev = rec[28:60]
        sealed_len = struct.unpack_from("<I", rec, 60)[0]
        r.tag_ok = r.body_ok = False
        r.event = None
        r.user_id = None
        if sealed_len > flen - 96:
            F.add("bad_record", fname, "sealed_len %d exceeds frame_len - 96 = %d" % (sealed_len, flen - 96), offset=off, seq=r.seq)
            r.chain = None
            records.append(r)
            off += flen
            continue
        r.chain = sha256(rec[8 : 64 + sealed_len])
        # seq continuity (§2.2)
        if after_gap:
            if last_seq is not None and r.seq <= last_seq:
                F.add("seq_mismatch", fname, "seq %d after a gap is not past %d" % (r.seq, last_seq), offset=off, seq=r.seq)
        elif r.seq != expect_seq:
            F.add("seq_mismatch", fname, "seq %d, expected %d" % (r.seq, expect_seq), offset=off, seq=r.seq)
        # chain link
        if not after_gap and r.prev != prev_chain:
            F.add("chain_break", fname, "prev_hash %s is not the previous chain hash %s" % (r.prev.hex(), prev_chain.hex()), offset=off, seq=r.seq)
        # time
        if not mstart <= r.ts < mend:
            F.add("bad_time", fname, "occurred_at %d (%s) outside the segment's month" % (r.ts, fmt_ts(r.ts)), offset=off, seq=r.seq)
        # tag (§2.2)
        key = ring.get(r.key_id)
        if key is None:
            F.add("unknown_key", fname, "no key %d for org %s in the keyring" % (r.key_id, org), offset=off, seq=r.seq)
        else:
            want = hmac.new(key, b"auditlog.record.v1" + bytes([len(org_b)]) + org_b + r.chain, hashlib.sha256).digest()
            r.tag_ok = hmac.compare_digest(want, rec[flen - 32 :])
            if not r.tag_ok:
                F.add("tag_mismatch", fname, "HMAC tag does not verify with key %d" % r.key_id, offset=off, seq=r.seq)
        # body and openings (§2.3, §2.4)
        try:
            body = parse_body(rec[64 : 64 + sealed_len])
            r.user_id = body["user_id"]
            r.body = body
            r.body_ok = True
            openings, kind = parse_openings(rec[64 + sealed_len : flen - 32], len(body["slots"]))
            if body["slots"] and pii_root_of(openings) != body["pii_root"]:
                F.add("commitment_mismatch", fname, "personal-data root recomputed from the openings differs from the sealed one", offset=off, seq=r.seq)
            r.event = decode_event(body, openings, kind)
        except DecodeError as e:
            F.add("bad_body", fname, str(e), offset=off, seq=r.seq)
        records.append(r)
        prev_chain = r.chain
        expect_seq = r.seq + 1
        last_seq = r.seq if last_seq is None else max(last_seq, r.seq)
        after_gap = False
        off += flen
    facts["records_end"] = off
    if facts["clean_prefix"] is None:
        facts["clean_prefix"] = len(records)
    return hdr, records, facts, data


# ---------------------------------------------------------------- index (§3)

M64 = U64


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001B3) & M64
    return h


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def terms_of(body):
    out = []
    if body["user_id"] is not None:
        out.append(b"\x01" + body["user_id"].encode())
    a = body["action"]
    out.append(b"\x02" + a.encode())
    parts = a.split(".")
    for i in range(1, len(parts)):
        out.append(b"\x03" + ".".join(parts[:i]).encode())
    out.append(b"\x04" + body["resource_type"].encode())
    out.append(b"\x05" + body["resource_id"].encode())
    if body["trace_id"] is not None:
        out.append(b"\x06" + body["trace_id"].encode())
    return out


def probes(h, k, m, scheme, block):
    h1 = mix(h)
    h2 = mix(h ^ 0x9E3779B97F4A7C15) | 1
    bits = []
    if scheme == 2:
        x = h1 ^ (((block + 1) * 0x9E3779B97F4A7C15) & M64)
        for _ in range(k):
            bits.append((x * m) >> 64)
            x = (x * 0xD1342543DE82EF95 + h2) & M64
    else:
        for j in range(k):
            x = (h1 + j * h2) & M64
            bits.append((x * m) >> 64)
    return bits


def user_mark(user_id):
    if user_id is None:
        return 0
    h = fnv1a64(b"\x01" + user_id.encode())
    v = mix(h ^ 0x6A09E667F3BCC909) >> 48
    return v + 2 if v < 2 else v


def check_index(path, fname, org, hdr, records, seg_size, keys, F, notes):
    """Checks one .idx against its segment's records. Returns a summary dict."""
    with open(path, "rb") as f:
        b = f.read()
    summary = {"file": fname, "size": len(b)}
    if len(b) < 216 + 36:
        F.add("index_mismatch", fname, "index of %d bytes is shorter than header + trailer" % len(b))
        return summary
    c = Cursor(b)
    magic = c.take(8)
    version = c.u16()
    r10 = c.u16()
    compat = c.u32()
    incompat = c.u32()
    key_id = c.u32()
    org_len = c.u8()
    r25 = c.take(3)
    org_raw = c.take(64)
    year, month, r95, part, r98 = c.u16(), c.u8(), c.u8(), c.u16(), c.u16()
    interval = c.u32()
    seg_hash = c.take(32)
    covered_len, record_count, first_seq = c.u64(), c.u64(), c.u64()
    min_ts, max_ts = c.i64(), c.i64()
    head = c.take(32)
    entry_count, section_count = c.u32(), c.u32()
    summary.update(
        key_id=key_id, interval=interval, covered_len=covered_len, record_count=record_count,
        first_seq=first_seq, min_ts=min_ts, max_ts=max_ts, head=head.hex(),
        entry_count=entry_count, section_count=section_count, compat_flags=compat,
    )

    def bad(detail, offset=None):
        F.add("index_mismatch", fname, detail, offset=offset)

    if magic != IDX_MAGIC:
        bad("magic %r is not AUDLOGIX" % magic, 0)
        return summary
    if version != 1:
        bad("format_version %d (reader knows 1)" % version, 8)
        return summary
    if incompat:
        bad("incompat_flags %#x set: must refuse" % incompat, 16)
        return summary
    # trailer: crc32 of every preceding byte, then the tag over every preceding byte (crc included)
    body_end = len(b) - 36
    crc_stored = struct.unpack_from("<I", b, body_end)[0]
    if crc32(b[:body_end]) != crc_stored:
        bad("CRC-32 mismatch", body_end)
    key = keys.get(org, {}).get(key_id)
    if key is None:
        F.add("unknown_key", fname, "index names key %d, not in the keyring for %s" % (key_id, org))
    else:
        tag = hmac.new(key, b"auditlog.index.v1" + b[: body_end + 4], hashlib.sha256).digest()
        summary["tag_ok"] = hmac.compare_digest(tag, b[body_end + 4 :])
        if not summary["tag_ok"]:
            bad("tag does not verify with key %d" % key_id, body_end + 4)
    if r10 or any(r25) or r95 or r98:
        bad("reserved bytes not zero")
    if not 1 <= org_len <= 64 or org_raw[:org_len] != org.encode() or any(org_raw[org_len:]):
        bad("org_len/org_id do not name org %s" % org, 24)
    if hdr is None:
        bad("segment header unreadable: index cannot be matched to it")
        return summary
    if (year, month, part) != (hdr["year"], hdr["month"], hdr["part"]):
        bad("names segment %s, file is %s" % (seg_name(year, month, part), seg_name(hdr["year"], hdr["month"], hdr["part"])), 92)
    if interval == 0:  # §3: readers accept any non-zero value
        bad("interval 0", 100)
    if seg_hash != hdr["genesis"]:
        bad("segment_hash is not SHA-256 of the segment header", 104)
    if covered_len < 256 or covered_len > seg_size:
        bad("covered_len %d not in 256..=segment length %d (file cut or altered after the index was written)" % (covered_len, seg_size), 136)
        return summary
    if record_count > max(0, covered_len - 256) // 96:
        bad("record_count %d exceeds (covered_len-256)/96" % record_count, 144)
    if first_seq != hdr["first_seq"]:
        bad("first_seq %d, segment's is %d" % (first_seq, hdr["first_seq"]), 152)
    if first_seq + record_count > U64:
        bad("first_seq + record_count does not fit in a u64", 152)
    # records covered
    cov = [r for r in records if r.offset + r.frame_len <= covered_len]
    if cov and cov[-1].offset + cov[-1].frame_len != covered_len and covered_len <= seg_size:
        bad("covered_len %d is not at a record boundary" % covered_len, 136)
    if not cov and covered_len != 256:
        bad("covered_len %d but no record lies in it" % covered_len, 136)
    if len(cov) != record_count:
        bad("record_count %d, the covered bytes hold %d records" % (record_count, len(cov)), 144)
    want_head = cov[-1].chain if cov else hdr["genesis"]
    if cov and head != want_head:
        bad("head %s is not the chain hash %s of the last covered record" % (head.hex(), want_head.hex()), 176)
    if not cov and head != hdr["genesis"]:
        bad("head of an empty index is not the genesis", 176)
    tss = [r.ts for r in cov]
    if (min_ts, max_ts) != ((min(tss), max(tss)) if tss else (I64_MAX, I64_MIN)):
        # a rebuilt index may widen bounds for records whose tag fails (§3.1)
        if all(r.tag_ok for r in cov):
            bad("min_ts/max_ts %d/%d, records span %s" % (min_ts, max_ts, (min(tss), max(tss)) if tss else "nothing"), 160)
    # entries
    entries = []
    try:
        for _ in range(entry_count):
            entries.append((c.u64(), c.i64(), c.u64()))
    except DecodeError:
        bad("entries run past the end of the file")
        return summary
    by_off = {r.offset: i for i, r in enumerate(cov)}
    want_entries = []
    prev_start = None
    running_max = I64_MIN
    for i, r in enumerate(cov):
        if interval and (prev_start is None or r.offset // interval > prev_start // interval):
            want_entries.append((r.seq, running_max, r.offset))
        running_max = max(running_max, r.ts)
        prev_start = r.offset
    for e in entries:
        if e[2] not in by_off:
            bad("entry offset %d is not the start of a covered record" % e[2])
    if [e[0] for e in entries] != [e[0] for e in want_entries] or [e[2] for e in entries] != [e[2] for e in want_entries]:
        bad("entries (seq, offset) %s differ from one per first record at/after each multiple of interval %s"
            % ([(e[0], e[2]) for e in entries][:8], [(e[0], e[2]) for e in want_entries][:8]))
    elif [e[1] for e in entries] != [e[1] for e in want_entries] and all(r.tag_ok for r in cov):
        bad("entries' max_ts_before differ from the records' times")
    # blocks: record index ranges
    starts = [by_off.get(e[2], None) for e in entries]
    blocks = []
    if None not in starts:
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(cov)
            blocks.append(cov[s:end])
    # sections
    seen_types = set()
    sections = []
    try:
        for _ in range(section_count):
            st = c.pos
            typ, ln = c.u32(), c.u32()
            payload = c.take(ln)
            sections.append((typ, payload, st))
    except DecodeError:
        bad("sections run past the end of the file")
        return summary
    if c.pos != body_end:
        bad("%d bytes between the last section and the CRC" % (body_end - c.pos), c.pos)
    summary["sections"] = []
    for typ, payload, st in sections:
        if typ in seen_types and typ in (1, 2, 3):
            bad("section type %d appears twice" % typ, st)
        seen_types.add(typ)
        if typ == 1:
            summary["sections"].append(check_block_times(payload, entries, blocks, min_ts, max_ts, bad, st))
        elif typ == 2:
            summary["sections"].append(check_filters(payload, entries, blocks, bad, st, notes, fname))
        elif typ == 3:
            summary["sections"].append(check_marks(payload, entries, cov, first_seq, record_count, bad, st))
        else:
            summary["sections"].append({"type": typ, "len": len(payload), "skipped": "unknown type"})
    return summary


def check_block_times(p, entries, blocks, min_ts, max_ts, bad, st):
    out = {"type": 1, "len": len(p)}
    if len(p) != 16 * len(entries):
        bad("block times: len %d, expected 16 x %d" % (len(p), len(entries)), st)
        return out
    times = [struct.unpack_from("<qq", p, 16 * i) for i in range(len(entries))]
    for i, (lo, hi) in enumerate(times):
        if lo > hi:
            bad("block times: block %d min_ts > max_ts" % i, st)
        if i + 1 < len(entries) and entries[i + 1][1] != max(entries[i][1], hi):
            bad("block times: entry %d max_ts_before is not max(previous, block max)" % (i + 1), st)
        if blocks:
            ts = [r.ts for r in blocks[i]]
            if ts and (lo, hi) != (min(ts), max(ts)):
                if all(r.tag_ok for r in blocks[i]) or lo > min(ts) or hi < max(ts):
                    bad("block times: block %d says %d..%d, records span %d..%d" % (i, lo, hi, min(ts), max(ts)), st)
    if times and (min(t[0] for t in times), max(t[1] for t in times)) != (min_ts, max_ts):
        bad("block times: overall bounds differ from the header's min_ts/max_ts", st)
    out["checked_blocks"] = len(times)
    return out


def check_filters(p, entries, blocks, bad, st, notes, fname):
    out = {"type": 2, "len": len(p)}
    c = Cursor(p)
    try:
        scheme, k, res = c.u8(), c.u8(), c.u16()
    except DecodeError:
        bad("block filters: section shorter than its 4-byte header", st)
        return out
    out.update(hash_scheme=scheme, k=k)
    if scheme not in (1, 2):
        bad("block filters: hash_scheme %d unknown" % scheme, st)
        return out
    if not 1 <= k <= 16 or res:
        bad("block filters: k %d out of 1..=16 or reserved not zero" % k, st)
        return out
    filters = []
    try:
        for _ in entries:
            filters.append(c.bytes_())
    except DecodeError as e:
        bad("block filters: %s" % e, st)
        return out
    if not c.done():
        bad("block filters: %d bytes after the last filter" % (c.end - c.pos), st)
    reproduced = 0
    empty = 0
    for i, flt in enumerate(filters):
        if not blocks:
            break
        n = len(flt)
        if n == 0:
            empty += 1
            continue
        m = 8 * n
        hashes = set()
        for r in blocks[i]:
            if not r.body_ok:
                bad("block filters: block %d holds a record whose body does not parse but has a filter" % i, st)
                continue
            for t in terms_of(r.body):
                hashes.add(fnv1a64(t))
        want = bytearray(n)
        for h in hashes:
            for bit in probes(h, k, m, scheme, i):
                want[bit // 8] |= 1 << (bit % 8)
                if not flt[bit // 8] >> (bit % 8) & 1:
                    bad("block filters: block %d misses a term of one of its records (bit %d clear)" % (i, bit), st)
                    break
        if bytes(want) == flt and n == -(-12 * len(hashes) // 8):
            reproduced += 1
    out["filters"] = len(filters)
    out["empty_filters"] = empty
    out["reproduced_exactly"] = reproduced
    return out


def check_marks(p, entries, cov, first_seq, record_count, bad, st):
    out = {"type": 3, "len": len(p)}
    if len(p) != 4 + 2 * record_count:
        bad("user marks: len %d, expected 4 + 2 x %d" % (len(p), record_count), st)
        return out
    if p[0] != 1 or any(p[1:4]):
        bad("user marks: scheme %d (1 expected) or reserved not zero" % p[0], st)
        return out
    seqs = [e[0] for e in entries]
    if (record_count > 0) != bool(entries):
        bad("user marks: entries must exist exactly when record_count > 0", st)
    if seqs and (seqs[0] != first_seq or any(a >= b for a, b in zip(seqs, seqs[1:])) or seqs[-1] >= first_seq + record_count):
        bad("user marks: entry seqs do not run from first_seq, strictly increasing, below first_seq + record_count", st)
    marks = struct.unpack_from("<%dH" % record_count, p, 4)
    for r in cov:
        i = r.seq - first_seq
        if not 0 <= i < record_count:
            bad("user marks: record seq %d has no mark" % r.seq, st)
            continue
        want = user_mark(r.user_id) if r.body_ok else 1
        if marks[i] != want and not (marks[i] == 1 and not r.tag_ok):
            bad("user marks: seq %d has mark %d, expected %d" % (r.seq, marks[i], want), st)
    out["checked_marks"] = len(cov)
    return out


# ---------------------------------------------------------------- driver


def chain_at(records, count, genesis):
    """Chain hash after the first `count` readable records (genesis for 0), or None."""
    if count == 0:
        return genesis
    if count > len(records):
        return None
    return records[count - 1].chain


def record_json(r):
    out = {
        "seq": r.seq,
        "offset": r.offset,
        "chain": r.chain.hex() if r.chain else None,
        "occurred_at": fmt_ts(r.ts),
        "occurred_at_us": r.ts,
        "key_id": r.key_id,
        "tag_ok": r.tag_ok,
    }
    if r.event is not None:
        out["event"] = r.event
    return out


def parse_rfc3339_us(text):
    """'2026-01-31T23:02:24.000000Z' -> µs since the epoch (UTC)."""
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)


def check_checkpoints(path, orgs_out, by_org, keys, G):
    """§8: each line's tag over its statement, then every pinned segment's chain at `count`."""
    with open(path, "rb") as f:
        lines = [l for l in f.read().decode("utf-8").splitlines() if l.strip()]
    pinned = set()
    for n, line in enumerate(lines, 1):
        where = "%s:%d" % (os.path.basename(path), n)
        try:
            cp = json.loads(line)
            if cp.get("format") != "auditlog-checkpoint" or cp.get("version") != 1:
                raise ValueError("not an auditlog-checkpoint version 1 line")
            org = cp["org_id"]
            ob = org.encode()
            st = bytes([len(ob)]) + ob + struct.pack("<q", parse_rfc3339_us(cp["created_at"]))
            st += struct.pack("<I", len(cp["segments"]))
            for sg in cp["segments"]:
                name = sg["segment"].encode()
                last_seq = U64 if sg.get("last_seq") is None else sg["last_seq"]
                last_time = I64_MIN if sg.get("last_time") is None else parse_rfc3339_us(sg["last_time"])
                st += bytes([len(name)]) + name + struct.pack("<QQq", sg["count"], last_seq, last_time)
                st += bytes.fromhex(sg["head"])
            key = keys.get(org, {}).get(int(cp["key_id"]))
        except (ValueError, KeyError, TypeError, struct.error) as e:
            G.add("checkpoint_mismatch", where, "unreadable checkpoint line: %s" % e)
            continue
        if key is None:
            G.add("unknown_key", where, "no key %s for org %s" % (cp["key_id"], org))
            continue
        tag = hmac.new(key, b"auditlog.checkpoint.v1" + st, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(tag, cp.get("tag", "")):
            G.add("checkpoint_mismatch", where, "checkpoint tag does not verify")
            continue
        pinned.add(org)
        segs = by_org.get(org, {})
        for sg in cp["segments"]:
            got = segs.get(sg["segment"])
            if got is None:
                G.add("checkpoint_mismatch", where, "pinned segment %s/%s is missing" % (org, sg["segment"]))
                continue
            hdr, recs = got
            if sg["count"] > len(recs):
                G.add("truncated_against_checkpoint", where, "%s/%s holds %d records, checkpoint pinned %d" % (org, sg["segment"], len(recs), sg["count"]))
                continue
            head = chain_at(recs, sg["count"], hdr["genesis"])
            last = recs[sg["count"] - 1] if sg["count"] else None
            if head.hex() != sg["head"]:
                G.add("checkpoint_mismatch", where, "%s/%s: chain after %d records differs from the pinned head" % (org, sg["segment"], sg["count"]))
            elif last is not None and (last.seq, fmt_ts(last.ts)) != (sg.get("last_seq"), sg.get("last_time")):
                G.add("checkpoint_mismatch", where, "%s/%s: last_seq/last_time differ from the record at count" % (org, sg["segment"]))
    for org in orgs_out:
        if org not in pinned:
            orgs_out[org].setdefault("warnings", []).append("no_checkpoint")


def main(argv):
    argv = list(argv)
    checkpoint = None
    if "--checkpoint" in argv:
        i = argv.index("--checkpoint")
        if i + 1 >= len(argv):
            sys.stderr.write(__doc__)
            return 2
        checkpoint = argv[i + 1]
        del argv[i : i + 2]
    args = [a for a in argv[1:] if not a.startswith("--")]
    with_records = "--no-records" not in argv
    if len(args) != 2:
        sys.stderr.write(__doc__)
        return 2
    log_dir, keyring = args
    try:
        keys = load_keyring(keyring)
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.stderr.write("keyring %s: %s\n" % (keyring, e))
        return 2
    G = Findings()
    notes = []
    result = {"dir": log_dir, "orgs": {}, "findings": G.items, "notes": notes}
    by_org = {}  # org -> segment name -> (header, records), for checkpoints
    try:
        names = sorted(os.listdir(log_dir))
    except OSError as e:
        sys.stderr.write("log dir %s: %s\n" % (log_dir, e))
        return 2
    for name in names:
        p = os.path.join(log_dir, name)
        if name == "LOCK":
            if os.path.getsize(p) != 0:
                G.add("unexpected_file", name, "LOCK is not empty")
            continue
        if name.endswith(".tmp"):
            continue
        if not os.path.isdir(p):
            G.add("unexpected_file", name, "not an org directory")
            continue
        if not ORG_RE.match(name) or name in (".", ".."):
            G.add("unexpected_file", name, "directory name is not an org id")
            continue
        result["orgs"][name] = read_org(p, name, keys, notes, with_records, by_org)
    if checkpoint is not None:
        try:
            check_checkpoints(checkpoint, result["orgs"], by_org, keys, G)
        except OSError as e:
            sys.stderr.write("checkpoint %s: %s\n" % (checkpoint, e))
            return 2
    total = len(G.items) + sum(len(o["findings"]) + sum(len(s["findings"]) for s in o["segments"]) for o in result["orgs"].values())
    result["finding_count"] = total
    result["intact"] = total == 0
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
    return 0 if total == 0 else 1


def read_org(odir, org, keys, notes, with_records, by_org):
    OF = Findings()
    segs = {}  # (year, month, part) -> dict
    idxs = {}
    for name in sorted(os.listdir(odir)):
        p = os.path.join(odir, name)
        if name == "quarantine":
            q = sorted(os.listdir(p)) if os.path.isdir(p) else []
            if q:
                notes.append({"org": org, "note": "quarantine/ holds %d files (recovery ran; not read back)" % len(q), "files": q})
            continue
        if name.endswith(".tmp"):
            continue
        m = NAME_RE.match(name)
        if m:
            y, mo = int(m.group(1)), int(m.group(2))
            part = int(m.group(3) or 0)
            if not (1970 <= y <= 9999 and 1 <= mo <= 12):
                OF.add("unexpected_file", name, "file name names no valid month")
                continue
            (segs if m.group(4) == "seg" else idxs)[(y, mo, part)] = name
            continue
        if COLD_RE.match(name):
            notes.append({"org": org, "file": name, "note": "frozen month (.cold): its format is not in FORMAT.md; not read"})
            continue
        OF.add("unexpected_file", name, "not a segment, index, cold file or quarantine")
    out = {"segments": [], "findings": OF.items}
    by_id = {}
    for sid in sorted(segs):
        fname = "%s/%s" % (org, segs[sid])
        F = Findings()
        hdr, records, facts, _ = walk_segment(os.path.join(odir, segs[sid]), fname, org, keys, F)
        if hdr and (hdr["year"], hdr["month"], hdr["part"]) != sid:
            F.add("bad_header", fname, "header names %s, file name another" % seg_name(hdr["year"], hdr["month"], hdr["part"]))
        seg = {
            "file": segs[sid],
            "segment": seg_name(*sid),
            "header": None,
            "record_count": len(records),
            "findings": F.items,
        }
        if hdr:
            seg["header"] = {
                "ordinal": hdr["ordinal"],
                "first_seq": hdr["first_seq"],
                "created_at": fmt_ts(hdr["created_at"]),
                "compat_flags": hdr["compat_flags"],
                "genesis": hdr["genesis"].hex(),
                "prev": link_json(hdr["prev"]),
                "continues": link_json(hdr["continues"]),
            }
        if with_records:
            seg["records"] = [record_json(r) for r in records]
        if sid in idxs:
            ipath = os.path.join(odir, idxs[sid])
            seg["index"] = check_index(ipath, "%s/%s" % (org, idxs[sid]), org, hdr, records, facts["size"], keys, F, notes)
        else:
            notes.append({"org": org, "file": segs[sid], "note": "no sidecar index (derived data; allowed)"})
        out["segments"].append(seg)
        by_id[sid] = (hdr, records, facts, F, fname)
        if hdr:
            by_org.setdefault(org, {})[seg_name(*sid)] = (hdr, records)
    for sid in sorted(idxs):
        if sid not in segs:
            OF.add("unexpected_file", idxs[sid], "index without a segment")
    check_links(by_id, OF, org)
    return out


def check_links(by_id, OF, org):
    """§2.1 links: ordinals, prev links in creation order, continuation parts."""
    by_ord = {}
    for sid, (hdr, records, facts, F, fname) in by_id.items():
        if hdr is None:
            continue
        if hdr["ordinal"] in by_ord:
            OF.add("link_mismatch", fname, "ordinal %d also used by %s" % (hdr["ordinal"], by_ord[hdr["ordinal"]][1]))
        by_ord[hdr["ordinal"]] = (sid, fname)
    if by_ord:
        missing = sorted(set(range(max(by_ord) + 1)) - set(by_ord))
        if missing:
            OF.add("link_mismatch", org, "segment ordinals %s are missing (deleted segment?)" % missing[:10])
    for sid, (hdr, records, facts, F, fname) in by_id.items():
        if hdr is None:
            continue
        prev = hdr["prev"]
        if hdr["ordinal"] == 0:
            if prev is not None:
                F.add("link_mismatch", fname, "ordinal 0 has a prev link")
        elif prev is None:
            F.add("link_mismatch", fname, "ordinal %d has no prev link" % hdr["ordinal"])
        else:
            tid = (prev["year"], prev["month"], prev["part"])
            want = by_ord.get(hdr["ordinal"] - 1)
            if want and want[0] != tid:
                F.add("link_mismatch", fname, "prev names %s, but ordinal %d is %s" % (seg_name(*tid), hdr["ordinal"] - 1, want[1]))
            check_link_target(by_id, tid, prev, F, fname, "prev")
        cont = hdr["continues"]
        if hdr["part"] == 0:
            if cont is not None:
                F.add("link_mismatch", fname, "part 0 has a continues link")
        else:
            want = (hdr["year"], hdr["month"], hdr["part"] - 1)
            if cont is None or (cont["year"], cont["month"], cont["part"]) != want:
                F.add("link_mismatch", fname, "part %d does not continue part %d" % (hdr["part"], hdr["part"] - 1))
            elif want in by_id and by_id[want][0] is not None:
                pr = by_id[want][1]
                mx = max((r.seq for r in pr), default=None)
                if mx is not None and hdr["first_seq"] <= mx:
                    F.add("link_mismatch", fname, "first_seq %d does not lie past seq %d of part %d" % (hdr["first_seq"], mx, hdr["part"] - 1))
                check_link_target(by_id, want, cont, F, fname, "continues")
            else:
                F.add("link_mismatch", fname, "continued part %s is missing" % seg_name(*want))
        if hdr["part"] > 0 and (hdr["year"], hdr["month"], hdr["part"] - 1) not in by_id:
            pass  # reported above


def check_link_target(by_id, tid, link, F, fname, what):
    if tid not in by_id:
        F.add("link_mismatch", fname, "%s link names %s, which does not exist" % (what, seg_name(*tid)))
        return
    thdr, trecs, tfacts, _, tname = by_id[tid]
    if thdr is None:
        F.add("link_mismatch", fname, "%s link names %s, whose header is unreadable" % (what, tname))
        return
    if what == "continues":
        # §2.1: count of readable records of the damaged part, head of the last readable one
        if link["count"] != len(trecs) or link["head"] != (trecs[-1].chain if trecs else thdr["genesis"]):
            F.add("link_mismatch", fname, "continues link (%d records, head %s) does not match %s's %d readable records"
                  % (link["count"], link["head"].hex(), tname, len(trecs)))
        return
    if link["count"] > tfacts["clean_prefix"] and tfacts["damaged"] and not (tfacts["torn_tail"] and tfacts["clean_prefix"] == len(trecs)):
        # §6: a link into a segment with unreadable bytes in its middle, before the linked record, is excused
        return
    head = chain_at(trecs, link["count"], thdr["genesis"])
    if head is None:
        F.add("link_mismatch", fname, "%s link says %s held %d records; it holds %d" % (what, tname, link["count"], len(trecs)))
    elif head != link["head"]:
        F.add("link_mismatch", fname, "%s link head %s is not %s's chain hash after %d records" % (what, link["head"].hex(), tname, link["count"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
