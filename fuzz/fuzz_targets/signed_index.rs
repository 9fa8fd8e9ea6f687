//! A sidecar index, re-signed with the fuzz key, over a fixed valid segment: `verify` and
//! queries must never panic, and must stay sound. The work is in
//! `auditlog::fuzzing::fuzz_signed_index`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditlog::fuzzing::fuzz_signed_index(data));
