//! A whole segment file: header round trip, recovery scan with resync, verified read.
//! The work is in `auditlog::fuzzing::fuzz_segment`, which panics only on a failed round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditlog::fuzzing::fuzz_segment(data));
