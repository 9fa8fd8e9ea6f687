//! A log directory holding one fuzzed segment, as a crash leaves it: `verify`, a checkpoint,
//! recovery (`Log::open`), one append, a clean close and a second open. The work is in
//! `auditlog::fuzzing::fuzz_recover`, which panics only when a property fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auditlog::fuzzing::fuzz_recover(data));
