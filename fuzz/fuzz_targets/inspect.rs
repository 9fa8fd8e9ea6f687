//! The forensic `inspect` scanner over any bytes: header or index detection, record walk,
//! resynchronisation after damage, `--from-offset`. The work is in
//! `auditlog::fuzzing::fuzz_inspect`, which panics only when a property fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditlog::fuzzing::fuzz_inspect(data));
