//! Checks of compressed sections before anything is allocated for their output.
//!
//! `parse` bounds every chunk's claimed size by its stored bytes times its codec's
//! largest expansion, which for zstd is 32768: a 117 KB file may honestly hold
//! 3 GiB of zeros, and a damaged one may claim as much. Decoding allocates a
//! section's output whole and then inflates its chunks on several threads, so a
//! damaged chunk found while inflating is found after the memory was taken and
//! the chunks before it were written into it. Hence, before any section's output
//! is allocated, every chunk of every compressed section is read once and checked:
//! its checksum over the stored bytes (a damaged file is found without inflating
//! anything) and what its codec's framing says about its size
//! ([`Codec::check_framing`]). Reading the stored bytes twice costs little: they
//! are the small side of a compressed section, and xxh3 runs at memory speed.
//!
//! Uncompressed sections need no such pass: `parse` has checked that their bytes
//! are all present, so their output is never larger than the file.

use super::chunk_seed;
use super::read::{zeroed, SectionLayout, Source};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::hash::checksum64;

/// Check the stored bytes of every chunk of a compressed `section`: checksum and
/// framing. Uncompressed sections pass (their data is checked as it is read).
pub fn check_compressed<S: Source + ?Sized>(src: &S, section: &SectionLayout) -> Result<()> {
    if section.codec == Codec::Raw {
        return Ok(());
    }
    each_stored(src, section, |c, stored| {
        let chunk = &section.chunks[c];
        section
            .codec
            .check_framing(stored, u64::from(chunk.raw_len))
            .map_err(|err| Error::corrupt(format!("section {} chunk {c}: {err}", section.index())))
    })
}

/// Check the stored checksums of `section`'s chunks without decoding them, reading
/// one chunk at a time: cheap (the stored bytes only) and small in memory, for
/// telling a damaged file from a large one when a section's memory cannot be had.
pub fn verify_stored<S: Source + ?Sized>(src: &S, section: &SectionLayout) -> Result<()> {
    if section.codec == Codec::Raw && section.unverified {
        return Ok(());
    }
    each_stored(src, section, |_, _| Ok(()))
}

/// How much output [`check_decodes`] inflates at most: it runs only when memory
/// is short, and an honest 40 MB zstd file can stand for a terabyte.
pub const DECODE_CHECK_BUDGET: u64 = 256 << 20;

/// Inflate the chunks of a compressed `section` into one chunk-sized scratch
/// buffer, keeping nothing, up to [`DECODE_CHECK_BUDGET`] bytes of output: when
/// the section's output cannot be allocated, this tells a chunk that does not
/// decode to its claimed size (a corrupt file, even with valid checksums) from a
/// file that is merely larger than memory. Returns `Ok` when the chunks checked
/// decode, or when not even the scratch can be had.
pub fn check_decodes<S: Source + ?Sized>(src: &S, section: &SectionLayout) -> Result<()> {
    if section.codec == Codec::Raw {
        return Ok(());
    }
    let largest = section.chunks.iter().map(|c| c.raw_len).max().unwrap_or(0);
    let Ok(mut scratch) = zeroed(u64::from(largest), "a decoded chunk") else {
        return Ok(());
    };
    let mut budget = DECODE_CHECK_BUDGET;
    each_stored(src, section, |c, stored| {
        let raw_len = section.chunks[c].raw_len;
        if budget < u64::from(raw_len) {
            return Ok(());
        }
        budget -= u64::from(raw_len);
        let out = &mut scratch[..raw_len as usize];
        section
            .codec
            .decompress_into(stored, out)
            .map_err(|err| match err {
                Error::Memory(_) => err,
                _ => Error::corrupt(format!("section {} chunk {c}: {err}", section.index())),
            })
    })
}

/// Read each chunk's stored bytes in turn into one scratch buffer, check their
/// checksum, then hand them to `check`.
fn each_stored<S: Source + ?Sized>(
    src: &S,
    section: &SectionLayout,
    mut check: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let largest = section.chunks.iter().map(|c| c.stored_len).max();
    let mut scratch = zeroed(u64::from(largest.unwrap_or(0)), "a stored chunk")?;
    for (c, chunk) in section.chunks.iter().enumerate() {
        let stored = &mut scratch[..chunk.stored_len as usize];
        src.read_at(chunk.offset, stored)?;
        if checksum64(stored, chunk_seed(section.index(), c as u64)) != chunk.checksum {
            return Err(Error::corrupt(format!(
                "section {} chunk {c} checksum mismatch",
                section.index()
            )));
        }
        check(c, stored)?;
    }
    Ok(())
}
