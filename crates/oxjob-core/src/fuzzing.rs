//! The parser properties shared by the libFuzzer targets (`fuzz/`) and the bounded
//! mutation runs of `cargo test` (`tests/fuzz_parsers.rs`).

use crate::codec::Codec;
use crate::container::{parse, read_all};
use crate::pool::dropped;
use crate::pool::frame::{Header, HEADER_LEN};

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

/// Decode `data` as a frame header (its first bytes) and as a `Forget` body: no
/// panic, and whatever decodes encodes back to the same bytes.
pub fn check_frame(data: &[u8]) {
    if let Some(bytes) = data.first_chunk::<HEADER_LEN>() {
        if let Ok(header) = Header::decode(bytes) {
            assert_eq!(&header.encode(), bytes);
        }
    }
    if let Ok(keys) = dropped::decode(data) {
        assert_eq!(dropped::encode(&keys), data);
    }
}
