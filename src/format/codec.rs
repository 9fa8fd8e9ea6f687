//! Bounds-checked little-endian reader and infallible writer helpers.
//!
//! Every multi-byte integer on disk is little-endian. Lengths inside records use unsigned
//! LEB128 (at most 5 bytes, minimal encoding only, so each value has exactly one encoding).

use super::{DecodeError, DecodeErrorKind};

/// Appends `v` as unsigned LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Number of bytes `put_varint` writes for `v`.
pub fn varint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

/// Appends a LEB128 length followed by the bytes.
///
/// Callers bound every field far below 4 GiB before encoding (see `MAX_FRAME_LEN`), so the
/// length always fits in a `u32`.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(bytes);
}

/// A cursor over a byte slice that never reads past its end.
///
/// `base` is the absolute file offset of `buf[0]`, so errors name real file offsets.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where the field read last begins (for [`Reader::error_in_last`]).
    last: usize,
    base: u64,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, whose first byte sits at file offset `base`.
    pub fn new(buf: &'a [u8], base: u64, structure: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            last: 0,
            base,
            structure,
        }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Reads the 8-byte magic and the u16 format version that open every file of the
    /// format, and checks both: `magic` exactly, the version against [`FORMAT_VERSION`].
    ///
    /// [`FORMAT_VERSION`]: super::FORMAT_VERSION
    pub fn magic_and_version(&mut self, magic: [u8; 8]) -> Result<(), DecodeError> {
        let at = self.offset();
        let found: [u8; 8] = self.array("magic")?;
        if found != magic {
            return Err(DecodeError {
                structure: self.structure,
                field: "magic",
                offset: at,
                kind: DecodeErrorKind::BadMagic { found },
            });
        }
        let version = self.u16("format_version")?;
        if version != super::FORMAT_VERSION {
            return Err(self.error_in_last(
                "format_version",
                DecodeErrorKind::UnsupportedVersion {
                    found: version,
                    supported: super::FORMAT_VERSION,
                },
            ));
        }
        Ok(())
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// An error at the next unread byte: for a field not read yet, or for what follows
    /// everything read (trailing bytes).
    pub fn error(&self, field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            structure: self.structure,
            field,
            offset: self.offset(),
            kind,
        }
    }

    /// An error at `offset`, for a structure of several fields read before the check.
    pub fn error_at(&self, offset: u64, field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            structure: self.structure,
            field,
            offset,
            kind,
        }
    }

    /// An error in the field just read, at the offset where that field begins (not past
    /// its end, where [`Reader::error`] would put it).
    pub fn error_in_last(&self, field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            structure: self.structure,
            field,
            offset: self.base + self.last as u64,
            kind,
        }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        self.last = self.pos;
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.error(
                field,
                DecodeErrorKind::Truncated {
                    needed: n as u64,
                    available: self.remaining() as u64,
                },
            )),
        }
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Reads a little-endian `i64`.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_le_bytes)
    }

    /// Reads a minimal unsigned LEB128 value of at most 5 bytes.
    pub fn varint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..5u32 {
            let byte = self.u8(field)?;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.last = start;
                let v = u32::try_from(value).map_err(|_| {
                    self.error_in_last(field, DecodeErrorKind::Invalid("varint exceeds u32"))
                })?;
                if self.pos - start != varint_len(v) {
                    return Err(
                        self.error_in_last(field, DecodeErrorKind::Invalid("non-minimal varint"))
                    );
                }
                return Ok(v);
            }
        }
        self.last = start;
        Err(self.error_in_last(
            field,
            DecodeErrorKind::Invalid("varint longer than 5 bytes"),
        ))
    }

    /// Reads a varint length followed by that many bytes.
    pub fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.varint(field)?;
        self.take(n as usize, field)
    }

    /// Reads a varint-prefixed UTF-8 string.
    pub fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.offset();
        let b = self.bytes(field)?;
        std::str::from_utf8(b).map_err(|_| DecodeError {
            structure: self.structure,
            field,
            offset: at,
            kind: DecodeErrorKind::Invalid("not UTF-8"),
        })
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(&self, field: &'static str) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.error(
                field,
                DecodeErrorKind::TrailingBytes {
                    count: self.remaining() as u64,
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v: u32) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut r = Reader::new(&out, 0, "test");
            prop_assert_eq!(r.varint("v").ok(), Some(v));
            prop_assert!(r.finish("end").is_ok());
        }
    }

    #[test]
    fn non_minimal_varint_is_rejected() {
        let mut r = Reader::new(&[0x80, 0x00], 0, "test");
        assert!(matches!(
            r.varint("v"),
            Err(DecodeError {
                kind: DecodeErrorKind::Invalid("non-minimal varint"),
                ..
            })
        ));
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f], 0, "test");
        assert!(r.varint("v").is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 0, "test");
        assert!(r.varint("v").is_err());
    }

    #[test]
    fn truncated_read_reports_offset() {
        let mut r = Reader::new(&[1, 2, 3], 100, "test");
        let e = r.u64("field").err();
        assert!(matches!(
            e,
            Some(DecodeError {
                offset: 100,
                field: "field",
                kind: DecodeErrorKind::Truncated {
                    needed: 8,
                    available: 3
                },
                ..
            })
        ));
    }
}
