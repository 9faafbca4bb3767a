//! The oxjob container: the file format of `dump`/`load` and of cache entries.
//!
//! ```text
//! file      := preamble section* end
//! preamble  := MAGIC[8] version:u16 flags:u16 n_sections:u32 reserved:u64 checksum:u64
//! section   := kind:u8 codec:u8 flags:u16 chunk_size:u32 raw_len:u64 padding:u32 reserved:u32
//!              (raw:        chunk_checksum:u64 * n_chunks)  header_checksum:u64
//!              (raw:        zero byte * padding, then raw_len bytes of data)
//!              (compressed: chunk * n_chunks, chunk := stored_len:u32 checksum:u64 bytes)
//! end       := END_MAGIC[8] total_len:u64
//! ```
//!
//! All integers are little-endian. The first section is the pickle stream, the
//! others are its out-of-band buffers, in order. Sections are cut into chunks of
//! `chunk_size` bytes (the last one shorter) that are compressed, checksummed and
//! decompressed independently, on several threads. The data of an uncompressed
//! buffer section starts on a 4 KiB boundary of the container so that it can be
//! memory-mapped as is.
//!
//! Every byte is checked: headers by their checksums, chunks by an xxh3-64 of their
//! stored bytes seeded with their section and chunk numbers (so swapped chunks are
//! caught), padding by being zero, the end by its magic and length. Sizes are
//! checked against the bytes present (and each codec's largest expansion) before
//! anything is allocated, and every allocation is fallible: a size the file can
//! justify but memory cannot hold is [`crate::Error::Memory`], never an abort.
//!
//! Compressed chunks are checked before they are inflated: before any section's
//! output is allocated, the checksum of every compressed chunk's stored bytes, and
//! what its codec's framing says about its decoded size, are checked (see
//! `check.rs`). The checksums cover the stored bytes, not the decoded ones, for
//! exactly this reason: a damaged file is found without inflating anything.
//!
//! The one exception: `load(mmap_mode='r+')` lets users write into the stored
//! arrays, so before mapping it sets the `unverified` flag (bit 0 of `flags`) of the
//! uncompressed buffer sections, whose data checksums are then no longer checked.

mod check;
mod read;
mod write;

pub use check::{check_compressed, check_decodes, verify_stored};
pub use read::{
    mark_unverified, parse, read_section, ChunkInfo, FileSource, Layout, SectionLayout, Source,
};
pub use write::{write, WriteOptions};

/// First bytes of every container (0x93 keeps text tools away, CRLF catches newline mangling).
pub const MAGIC: [u8; 8] = *b"\x93OXJOB\r\n";
/// Last eight bytes before the total length.
pub const END_MAGIC: [u8; 8] = *b"OXJOBEND";
/// Format version written and read by this crate.
pub const VERSION: u16 = 1;
/// Size of the preamble.
pub const PREAMBLE_LEN: u64 = 32;
/// Size of the end marker.
pub const END_LEN: u64 = 16;
/// Alignment of uncompressed buffer data (a page).
pub const ALIGN: u64 = 4096;
/// Chunk size of uncompressed sections (the checksum granularity).
pub const RAW_CHUNK: u32 = 4 << 20;
/// Chunk size of compressed sections.
pub const COMPRESSED_CHUNK: u32 = 2 << 20;
/// Largest chunk size a reader accepts.
pub const MAX_CHUNK: u32 = 64 << 20;

/// Sections smaller than this are handled on the calling thread: starting threads
/// costs tens of microseconds, more than the work.
pub const PARALLEL_ABOVE: u64 = 4 << 20;

fn threads_for(len: u64, threads: usize) -> usize {
    if len < PARALLEL_ABOVE {
        1
    } else {
        threads
    }
}

const SECTION_FIXED_LEN: u64 = 24;
/// Section flag: data checksums are stale (the data was mapped for writing).
const FLAG_UNVERIFIED: u16 = 1;
const CHUNK_RECORD_LEN: u64 = 12;
const HEADER_SEED: u64 = 0x5EC7_0000_0000_0000;

/// What a section holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SectionKind {
    /// The pickle protocol-5 stream (always the first section).
    Pickle = 1,
    /// One out-of-band buffer of that stream.
    Buffer = 2,
}

/// One section to write.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    /// What the bytes are.
    pub kind: SectionKind,
    /// The bytes.
    pub data: &'a [u8],
}

/// Parse `src` and decode every section, checking everything; returns the layout
/// and the decoded sections (pickle stream first).
///
/// Every compressed chunk's stored bytes are checked (checksum and framing) before
/// the first section's output is allocated, and uncompressed sections (whose
/// checksums are checked as they are read, and whose size the file's own bytes
/// bound) are read before compressed ones: a damaged file costs no more memory
/// than its own bytes.
pub fn read_all<S: Source + ?Sized>(
    src: &S,
    threads: usize,
) -> crate::Result<(Layout, Vec<crate::buffer::Buffer>)> {
    let layout = parse(src)?;
    for section in &layout.sections {
        check_compressed(src, section)?;
    }
    let mut decoded = Vec::new();
    decoded
        .try_reserve_exact(layout.sections.len())
        .map_err(|_| crate::Error::no_memory(layout.sections.len() as u64, "section list"))?;
    decoded.resize_with(layout.sections.len(), || None);
    for raw_first in [true, false] {
        for (index, section) in layout.sections.iter().enumerate() {
            if (section.codec == crate::codec::Codec::Raw) == raw_first {
                decoded[index] = Some(decode_checked(src, section, index, threads)?);
            }
        }
    }
    Ok((layout, decoded.into_iter().flatten().collect()))
}

/// Decode one section into a buffer of its own, checking its compressed chunks
/// (as [`read_all`] does) before allocating it.
pub fn decode_section<S: Source + ?Sized>(
    src: &S,
    section: &SectionLayout,
    index: usize,
    threads: usize,
) -> crate::Result<crate::buffer::Buffer> {
    check_compressed(src, section)?;
    decode_checked(src, section, index, threads)
}

/// Decode a section whose compressed chunks have been checked.
///
/// `parse` has checked raw_len against the bytes present, so the size is one the
/// file can justify, yet it can exceed the memory at hand. Then the section's
/// stored checksums are checked, and its chunks inflated one at a time into a
/// chunk-sized scratch buffer, before saying so: a damaged file is reported as
/// corrupt (what it is), and only an intact one as too large for this process.
fn decode_checked<S: Source + ?Sized>(
    src: &S,
    section: &SectionLayout,
    index: usize,
    threads: usize,
) -> crate::Result<crate::buffer::Buffer> {
    let purpose = format!("section {index}");
    let len = usize::try_from(section.raw_len)
        .map_err(|_| crate::Error::no_memory(section.raw_len, &purpose))?;
    let mut out = match crate::buffer::Buffer::zeroed(len, &purpose) {
        Ok(out) => out,
        Err(err) => {
            verify_stored(src, section)?;
            check_decodes(src, section)?;
            return Err(err);
        }
    };
    read_section(src, section, &mut out, threads)?;
    Ok(out)
}

/// Files up to this size are read with one system call and decoded from memory.
pub const SMALL_FILE: u64 = 1 << 20;

/// Read and check a whole container file: small files in one read, large ones with
/// positioned reads straight into the output buffers. Bytes after the container
/// are an error.
pub fn read_file(
    file: std::fs::File,
    threads: usize,
) -> crate::Result<(Layout, Vec<crate::buffer::Buffer>)> {
    let src = FileSource::new(file)?;
    let size = Source::size(&src);
    let (layout, decoded) = if size <= SMALL_FILE {
        let mut whole = crate::buffer::zeroed_vec(size as usize)
            .ok_or_else(|| crate::Error::no_memory(size, "the file"))?;
        src.read_at(0, &mut whole)?;
        read_all(&whole[..], threads)?
    } else {
        read_all(&src, threads)?
    };
    if layout.end != size {
        return Err(crate::Error::corrupt(
            "unexpected bytes after the end of the container",
        ));
    }
    Ok((layout, decoded))
}

pub(crate) fn chunk_seed(section: usize, chunk: u64) -> u64 {
    ((section as u64) << 40) ^ chunk
}

pub(crate) fn header_seed(section: usize) -> u64 {
    HEADER_SEED ^ section as u64
}

pub(crate) fn padding_for(offset: u64) -> u64 {
    (ALIGN - offset % ALIGN) % ALIGN
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
