//! libFuzzer target for the container decoder:
//! `cd crates/oxjob-core/fuzz && cargo +nightly fuzz run container corpus/container`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oxjob_core::fuzzing::check_mutated(data);
});
