//! The parser properties shared by the libFuzzer targets (`fuzz/`) and the bounded
//! mutation runs of `cargo test` (`tests/fuzz_parsers.rs`).

mod hostile;

pub use hostile::hostile_container;

use crate::buffer::{largest_asked, with_limit};
use crate::codec::Codec;
use crate::container::{check_compressed, parse, read_all};
use crate::error::Error;
use crate::workers::dropped;
use crate::workers::frame::{Header, HEADER_LEN};

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

/// Decode `data`, a damaged copy of a real container: as [`check_decoder`], and it
/// either decodes or is corrupt (never out of memory), found before more than the
/// input's own size was allocated for any section, unless every compressed chunk
/// has a valid checksum and framing (then only inflating it can tell; a fuzzer
/// that solves comparisons can forge checksums).
pub fn check_mutated(data: &[u8]) {
    check_decoder(data);
    let (result, largest) = largest_asked(|| read_all(data, 2));
    match result {
        Ok(_) => {}
        Err(Error::Corrupt(_)) if largest > data.len() as u64 => {
            let forged = parse(data).is_ok_and(|layout| {
                layout
                    .sections
                    .iter()
                    .all(|section| check_compressed(data, section).is_ok())
            });
            assert!(
                forged,
                "{largest} bytes allocated for a corrupt {}-byte input",
                data.len()
            );
        }
        Err(Error::Corrupt(_)) => {}
        Err(err) => panic!("a damaged container failed with {err:?}"),
    }
}

/// How far a built container got through the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Refused by the structure checks.
    Rejected,
    /// Parsed, then refused while decoding (a chunk, or the memory limit).
    Parsed,
    /// Decoded completely.
    Decoded,
    /// Decoded completely, and refused as out of memory under the small limit.
    Large,
}

/// Largest section the hostile checks let the decoder allocate.
pub const HOSTILE_LIMIT: u64 = 32 << 20;

/// Build a container with valid checksums and hostile sizes from `data` (see
/// [`hostile_container`]) and decode it: no panic, no abort; claims checked
/// against the input's size; failures only ever `Corrupt` or `Memory`. It is
/// decoded twice: with buffers up to [`HOSTILE_LIMIT`], and with a 64 KiB limit
/// that sends larger sections down the out-of-memory path.
pub fn check_hostile(data: &[u8]) -> Outcome {
    let file = hostile_container(data);
    with_limit(HOSTILE_LIMIT, || check_decoder(&file));
    let Ok(layout) = parse(&file[..]) else {
        return Outcome::Rejected;
    };
    let outcome = with_limit(HOSTILE_LIMIT, || read_all(&file[..], 2));
    let small = with_limit(1 << 16, || read_all(&file[..], 1));
    for result in [&outcome, &small] {
        if let Err(err) = result {
            assert!(
                matches!(err, Error::Corrupt(_) | Error::Memory(_)),
                "a built container failed with {err:?}"
            );
        }
    }
    let largest = layout.sections.iter().map(|s| s.raw_len).max().unwrap_or(0);
    match (&outcome, &small) {
        (Ok(_), Ok(_)) => assert!(largest <= 1 << 16),
        (Ok(_), Err(err)) => assert!(
            largest > 1 << 16 && matches!(err, Error::Memory(_)),
            "decodes with room, yet {err:?} without"
        ),
        (Err(_), Ok(_)) => panic!("fails with room, decodes without"),
        (Err(_), Err(_)) => {}
    }
    match (outcome, small) {
        (Ok(_), Ok(_)) => Outcome::Decoded,
        (Ok(_), Err(_)) => Outcome::Large,
        _ => Outcome::Parsed,
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
