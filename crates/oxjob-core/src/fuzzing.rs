//! The decoder property shared by the libFuzzer target (`fuzz/`) and the bounded
//! mutation run of `cargo test` (`tests/fuzz_container.rs`).

use crate::codec::Codec;
use crate::container::{parse, read_all};

/// Decode `data` as a container and check what any input must satisfy: no panic,
/// and never more decoded bytes than the input can justify.
pub fn check_decoder(data: &[u8]) {
    let Ok(layout) = parse(data) else { return };
    let claimed: u64 = layout.sections.iter().map(|s| s.raw_len).sum();
    let bound = (data.len() as u64).saturating_mul(Codec::Zstd.max_expansion());
    assert!(
        claimed <= bound,
        "{claimed} bytes claimed by a {}-byte input",
        data.len()
    );
    if let Ok((layout, decoded)) = read_all(data, 2) {
        for (section, bytes) in layout.sections.iter().zip(&decoded) {
            assert_eq!(section.raw_len, bytes.len() as u64);
        }
    }
}
