//! libFuzzer target for containers with valid checksums and hostile sizes (the
//! input picks the structure; see `oxjob_core::fuzzing::hostile_container`):
//! `cd crates/oxjob-core/fuzz && cargo +nightly fuzz run hostile`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    oxjob_core::fuzzing::check_hostile(data);
});
