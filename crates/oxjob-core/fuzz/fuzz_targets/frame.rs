//! libFuzzer target for the frame parsers (headers, `Forget` bodies):
//! `cd crates/oxjob-core/fuzz && cargo +nightly fuzz run frame`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oxjob_core::fuzzing::check_frame(data);
});
