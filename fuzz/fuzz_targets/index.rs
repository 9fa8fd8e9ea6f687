//! A sidecar index file: decode, re-encode and compare.
//! The work is in `auditlog::fuzzing::fuzz_index`, which panics only on a failed round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditlog::fuzzing::fuzz_index(data));
