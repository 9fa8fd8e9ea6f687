//! Where the bytes on disk go: auditlog's segments part by part (FORMAT.md §2), SQLite's file
//! b-tree by b-tree (its `dbstat` table), and what a zstd dictionary would make of the
//! compressible part of each record. The profile behind the bytes-on-disk ratio
//! (BENCHMARKS.md, "Where the bytes go").

use std::path::Path;
use std::time::Instant;

use auditlog::format::body::{Openings, SealedBody};
use auditlog::format::header::SEGMENT_HEADER_LEN;
use auditlog::format::record::decode_frame;
use rusqlite::Connection;

/// One segment's bytes, summed over its records, by part.
#[derive(Default)]
pub struct SegmentBytes {
    pub records: u64,
    /// 256-byte segment headers.
    pub headers: u64,
    /// frame_len, crc32, seq, occurred_at, key_id, sealed_len: 32 bytes a record.
    pub frame_fields: u64,
    pub prev_hash: u64,
    pub tag: u64,
    /// user_id, action, resource_type, resource_id, trace_id: the text only.
    pub body_strings: u64,
    /// before, after, metadata: the compact JSON text only.
    pub body_json: u64,
    /// The body's flags, length prefixes, slot count and slot descriptors (JSON pointers too).
    pub body_framing: u64,
    pub pii_root: u64,
    /// The openings' kind byte and salt seed (or explicit salts and commitments).
    pub openings_salts: u64,
    /// ip, user_agent, session_id and JSON slot values: the text only.
    pub openings_values: u64,
    /// The openings' length prefixes.
    pub openings_framing: u64,
    /// Each record's sealed body and openings, as stored: the input of the zstd estimate.
    pub compressible: Vec<Vec<u8>>,
}

impl SegmentBytes {
    pub fn total(&self) -> u64 {
        self.headers
            + self.frame_fields
            + self.prev_hash
            + self.tag
            + self.body_strings
            + self.body_json
            + self.body_framing
            + self.pii_root
            + self.openings_salts
            + self.openings_values
            + self.openings_framing
    }

    /// Adds every record of the segment file at `path`.
    pub fn add_segment(&mut self, path: &Path) {
        let data = std::fs::read(path).unwrap();
        self.headers += SEGMENT_HEADER_LEN as u64;
        let mut at = SEGMENT_HEADER_LEN;
        while at < data.len() {
            let rec = decode_frame(&data[at..], at as u64).unwrap();
            let body = SealedBody::decode(rec.sealed, 0).unwrap();
            let openings = Openings::decode(rec.openings, 0, body.pii.len()).unwrap();
            self.records += 1;
            self.frame_fields += 32;
            self.prev_hash += 32;
            self.tag += 32;
            let strings = [body.user_id, Some(body.action), Some(body.resource_type)]
                .into_iter()
                .chain([Some(body.resource_id), body.trace_id])
                .flatten()
                .map(|s| s.len() as u64)
                .sum::<u64>();
            let json = (body.before.len() + body.after.len() + body.metadata.len()) as u64;
            let root = if body.pii_root.is_some() { 32 } else { 0 };
            self.body_strings += strings;
            self.body_json += json;
            self.pii_root += root;
            self.body_framing += rec.sealed.len() as u64 - strings - json - root;
            let (salts, values) = match &openings {
                Openings::None => (0, 0),
                Openings::Seeded { values, .. } => {
                    (17, values.iter().map(|v| v.len() as u64).sum())
                }
                Openings::Explicit(_) => (rec.openings.len() as u64, 0),
            };
            self.openings_salts += salts;
            self.openings_values += values;
            self.openings_framing += rec.openings.len() as u64 - salts - values;
            self.compressible.push([rec.sealed, rec.openings].concat());
            at += rec.frame.len();
        }
    }

    /// Prints each part per record and as a share of the segment bytes.
    pub fn print(&self) {
        let n = self.records as f64;
        let total = self.total() as f64;
        let row = |what: &str, b: u64| {
            println!(
                "  {what:<52} {:>7.1} B  {:>5.1}%",
                b as f64 / n,
                100.0 * b as f64 / total
            );
        };
        row(
            "frame fields (len, crc, seq, time, key id, body len)",
            self.frame_fields,
        );
        row("prev_hash", self.prev_hash);
        row("tag (HMAC-SHA256)", self.tag);
        row(
            "body: user, action, resource type and id, trace id",
            self.body_strings,
        );
        row("body: before/after/metadata JSON text", self.body_json);
        row(
            "body: flags, lengths, personal-data slot descriptors",
            self.body_framing,
        );
        row("body: pii_root", self.pii_root);
        row("openings: kind and salt seed", self.openings_salts);
        row(
            "openings: ip, user agent, session id values",
            self.openings_values,
        );
        row("openings: lengths", self.openings_framing);
        row("segment headers (256 B a file)", self.headers);
        println!("  {:<52} {:>7.1} B", "segment total", total / n);
    }

    /// zstd at `level` with a dictionary of `dict_size` bytes trained on the first quarter of
    /// the records, applied to each of the other records' body and openings on its own (a
    /// record must stay readable alone). Returns (bytes before, bytes after, µs per record to
    /// compress, µs per record to decompress), per record.
    pub fn zstd_estimate(&self, level: i32, dict_size: usize) -> (f64, f64, f64, f64) {
        let (train, test) = self.compressible.split_at(self.compressible.len() / 4);
        let dict = zstd::dict::from_samples(train, dict_size).unwrap();
        let prepared = zstd::dict::EncoderDictionary::copy(&dict, level);
        let mut c = zstd::bulk::Compressor::with_prepared_dictionary(&prepared).unwrap();
        c.include_checksum(false).unwrap();
        c.include_contentsize(false).unwrap();
        c.include_dictid(false).unwrap();
        let start = Instant::now();
        let out: Vec<Vec<u8>> = test.iter().map(|r| c.compress(r).unwrap()).collect();
        let compress = start.elapsed();
        let prepared = zstd::dict::DecoderDictionary::copy(&dict);
        let mut d = zstd::bulk::Decompressor::with_prepared_dictionary(&prepared).unwrap();
        let start = Instant::now();
        let back: Vec<Vec<u8>> = out
            .iter()
            .zip(test)
            .map(|(o, r)| d.decompress(o, r.len()).unwrap())
            .collect();
        let decompress = start.elapsed();
        assert!(back == test, "zstd round trip");
        let n = test.len() as f64;
        let before = test.iter().map(|r| r.len()).sum::<usize>() as f64 / n;
        let after = out.iter().map(|o| o.len()).sum::<usize>() as f64 / n;
        (
            before,
            after,
            compress.as_secs_f64() * 1e6 / n,
            decompress.as_secs_f64() * 1e6 / n,
        )
    }
}

/// Bytes of each b-tree of the SQLite database at `path` (table and indexes), with the
/// payload they hold: `(name, bytes of pages, bytes of payload)`, largest first.
pub fn sqlite_btrees(path: &Path) -> Vec<(String, u64, u64)> {
    let conn = Connection::open(path).unwrap();
    let mut st = conn
        .prepare(
            "SELECT name, SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name \
             ORDER BY SUM(pgsize) DESC",
        )
        .unwrap();
    st.query_map([], |r| {
        let (pages, payload): (i64, i64) = (r.get(1)?, r.get(2)?);
        Ok((r.get(0)?, pages as u64, payload as u64))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}
