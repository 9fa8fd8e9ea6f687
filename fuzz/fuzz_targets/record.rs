//! One record frame: frame, sealed body and openings round trips; event opening.
//! The work is in `auditlog::fuzzing::fuzz_record`, which panics only on a failed round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditlog::fuzzing::fuzz_record(data));
