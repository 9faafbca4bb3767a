//! Reading and checking containers.

use super::{
    chunk_seed, header_seed, padding_for, threads_for, SectionKind, ALIGN, CHUNK_RECORD_LEN,
    END_LEN, END_MAGIC, FLAG_UNVERIFIED, MAGIC, MAX_CHUNK, PREAMBLE_LEN, SECTION_FIXED_LEN,
    VERSION,
};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::hash::checksum64;
use crate::work_queue;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Random-access bytes a container is read from.
pub trait Source: Sync {
    /// Total number of bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; reading past the end is a truncation.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

fn truncated(offset: u64, want: usize) -> Error {
    Error::corrupt(format!(
        "truncated: {want} bytes expected at offset {offset} are missing"
    ))
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).map_err(|_| truncated(offset, buf.len()))?;
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| truncated(offset, buf.len()))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// A file read with positioned reads (`pread`), so several threads can read at once.
pub struct FileSource {
    file: File,
    size: u64,
}

impl FileSource {
    /// Wrap an open file; its size is taken now.
    pub fn new(file: File) -> Result<Self> {
        let size = file.metadata()?.len();
        Ok(FileSource { file, size })
    }
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.size {
            return Err(truncated(offset, buf.len()));
        }
        self.file.read_exact_at(buf, offset).map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                truncated(offset, buf.len())
            } else {
                Error::Io(err)
            }
        })
    }
}

/// Where one chunk's stored bytes are and where its data goes.
#[derive(Clone, Debug)]
pub struct ChunkInfo {
    /// Offset of the stored bytes in the source.
    pub offset: u64,
    /// Number of stored bytes.
    pub stored_len: u32,
    /// Number of bytes the chunk decodes to.
    pub raw_len: u32,
    /// Expected xxh3-64 of the stored bytes.
    pub checksum: u64,
}

/// One section as found in the source.
#[derive(Clone, Debug)]
pub struct SectionLayout {
    /// Pickle stream or buffer.
    pub kind: SectionKind,
    /// Codec of its chunks.
    pub codec: Codec,
    /// Decoded size.
    pub raw_len: u64,
    /// For uncompressed sections: the offset of the (contiguous) data.
    pub data_offset: u64,
    /// Chunks in order.
    pub chunks: Vec<ChunkInfo>,
    /// The data was opened for writing through a memory map: its chunk checksums
    /// no longer hold and are not checked.
    pub unverified: bool,
    /// Offset of the section header.
    pub header_offset: u64,
    index: usize,
}

impl SectionLayout {
    /// The section's number in its container (0: the pickle stream).
    pub fn index(&self) -> usize {
        self.index
    }
}

/// The checked structure of a container.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The pickle section first, then the buffers.
    pub sections: Vec<SectionLayout>,
    /// Offset just past the end marker: the container's length.
    pub end: u64,
}

struct Cursor<'s, S: Source + ?Sized> {
    src: &'s S,
    pos: u64,
}

impl<S: Source + ?Sized> Cursor<'_, S> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.src.read_at(self.pos, &mut buf)?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn remaining(&self) -> u64 {
        self.src.size().saturating_sub(self.pos)
    }
}

/// Push onto a vector whose length the input decides, failing instead of aborting.
fn push<T>(vec: &mut Vec<T>, item: T, what: &str) -> Result<()> {
    if vec.try_reserve(1).is_err() {
        let bytes = (vec.len() as u64 + 1).saturating_mul(std::mem::size_of::<T>() as u64);
        return Err(Error::no_memory(bytes, what));
    }
    vec.push(item);
    Ok(())
}

pub(super) fn zeroed(len: u64, what: &str) -> Result<Vec<u8>> {
    usize::try_from(len)
        .ok()
        .and_then(crate::buffer::zeroed_vec)
        .ok_or_else(|| Error::no_memory(len, what))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Check the container's structure and headers and return where everything is.
///
/// Chunk data is not read here (see [`read_section`]), so parsing is cheap and a
/// memory-mapped load stays O(1) in the size of its buffers. Bytes after the end
/// marker are not looked at: the caller decides whether they are allowed.
pub fn parse<S: Source + ?Sized>(src: &S) -> Result<Layout> {
    if src.size() < PREAMBLE_LEN + END_LEN {
        // Tell a foreign file from a truncated one by the bytes that are there.
        let mut head = vec![0u8; src.size().min(MAGIC.len() as u64) as usize];
        src.read_at(0, &mut head)?;
        if head[..] != MAGIC[..head.len()] {
            return Err(Error::corrupt("not an oxjob file (bad magic)"));
        }
        return Err(Error::corrupt(format!(
            "truncated: {} bytes is too short for an oxjob file",
            src.size()
        )));
    }
    let mut cur = Cursor { src, pos: 0 };
    let preamble: [u8; PREAMBLE_LEN as usize] = cur.take()?;
    if preamble[..8] != MAGIC {
        return Err(Error::corrupt("not an oxjob file (bad magic)"));
    }
    if checksum64(&preamble[..24], 0) != u64_at(&preamble, 24) {
        return Err(Error::corrupt("preamble checksum mismatch"));
    }
    let version = u16_at(&preamble, 8);
    if version != VERSION {
        return Err(Error::corrupt(format!(
            "unsupported format version {version} (this oxjob reads version {VERSION})"
        )));
    }
    if u16_at(&preamble, 10) != 0 || u64_at(&preamble, 16) != 0 {
        return Err(Error::corrupt("reserved preamble fields are not zero"));
    }
    let n_sections = u32_at(&preamble, 12) as u64;
    // Every section takes at least a fixed header and a checksum.
    if n_sections == 0 || n_sections > cur.remaining() / (SECTION_FIXED_LEN + 8) {
        return Err(Error::corrupt(format!(
            "section count {n_sections} does not fit the file"
        )));
    }
    // Grown as sections are found, not reserved from the claimed count.
    let mut sections = Vec::new();
    for index in 0..n_sections as usize {
        let section = parse_section(&mut cur, index)?;
        push(&mut sections, section, "the section table")?;
    }
    let end: [u8; END_LEN as usize] = cur.take()?;
    if end[..8] != END_MAGIC {
        return Err(Error::corrupt(format!(
            "end marker missing at offset {}",
            cur.pos - END_LEN
        )));
    }
    if u64_at(&end, 8) != cur.pos {
        return Err(Error::corrupt("end marker length mismatch"));
    }
    Ok(Layout {
        sections,
        end: cur.pos,
    })
}

fn parse_section<S: Source + ?Sized>(
    cur: &mut Cursor<'_, S>,
    index: usize,
) -> Result<SectionLayout> {
    let start = cur.pos;
    let fixed: [u8; SECTION_FIXED_LEN as usize] = cur.take()?;
    let what = |msg: &str| Error::corrupt(format!("section {index} at offset {start}: {msg}"));
    let kind = match (fixed[0], index) {
        (1, 0) => SectionKind::Pickle,
        (2, i) if i > 0 => SectionKind::Buffer,
        (kind, _) => return Err(what(&format!("unexpected section kind {kind}"))),
    };
    let codec =
        Codec::from_byte(fixed[1]).ok_or_else(|| what(&format!("unknown codec {}", fixed[1])))?;
    let chunk_size = u32_at(&fixed, 4);
    let raw_len = u64_at(&fixed, 8);
    let padding = u32_at(&fixed, 16) as u64;
    let flags = u16_at(&fixed, 2);
    let unverified = flags == FLAG_UNVERIFIED && kind == SectionKind::Buffer && codec == Codec::Raw;
    if (flags != 0 && !unverified) || u32_at(&fixed, 20) != 0 {
        return Err(what("reserved fields are not zero"));
    }
    if chunk_size == 0 || chunk_size > MAX_CHUNK {
        return Err(what(&format!("chunk size {chunk_size} out of range")));
    }
    let n_chunks = raw_len.div_ceil(chunk_size as u64);
    let mut layout = SectionLayout {
        kind,
        codec,
        raw_len,
        data_offset: 0,
        chunks: Vec::new(),
        unverified,
        header_offset: start,
        index,
    };
    let mut hashed = fixed.to_vec();
    if codec == Codec::Raw {
        // The checksum table and the data must both be present before we trust raw_len.
        let table_len = n_chunks
            .checked_mul(8)
            .filter(|len| len.saturating_add(8).saturating_add(raw_len) <= cur.remaining())
            .ok_or_else(|| what(&format!("raw length {raw_len} does not fit the file")))?;
        let mut table = zeroed(table_len, "a checksum table")?;
        cur.src.read_at(cur.pos, &mut table)?;
        cur.pos += table_len;
        hashed
            .try_reserve_exact(table.len())
            .map_err(|_| Error::no_memory(table_len, "a checksum table"))?;
        hashed.extend_from_slice(&table);
        check_header(cur, &hashed, index, &what)?;
        let expected_padding = match kind {
            SectionKind::Buffer => padding_for(cur.pos),
            SectionKind::Pickle => 0,
        };
        if padding != expected_padding || padding >= ALIGN {
            return Err(what("bad alignment padding"));
        }
        let mut pad = vec![0u8; padding as usize];
        cur.src.read_at(cur.pos, &mut pad)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(what("padding bytes are not zero"));
        }
        cur.pos += padding;
        layout.data_offset = cur.pos;
        for (c, sum) in table.chunks_exact(8).enumerate() {
            let raw_offset = c as u64 * chunk_size as u64;
            let len = (raw_len - raw_offset).min(chunk_size as u64) as u32;
            let chunk = ChunkInfo {
                offset: cur.pos + raw_offset,
                stored_len: len,
                raw_len: len,
                checksum: u64_at(sum, 0),
            };
            push(&mut layout.chunks, chunk, "a chunk table")?;
        }
        if cur.remaining() < raw_len {
            return Err(truncated(cur.pos, raw_len as usize));
        }
        cur.pos += raw_len;
    } else {
        if padding != 0 {
            return Err(what("compressed sections have no padding"));
        }
        check_header(cur, &hashed, index, &what)?;
        layout.data_offset = cur.pos;
        let mut raw_offset = 0u64;
        // Records are pushed one by one as they are read, so a huge claimed length
        // fails on the first missing record instead of allocating a huge table.
        for c in 0..n_chunks {
            let record: [u8; CHUNK_RECORD_LEN as usize] = cur.take()?;
            let stored_len = u32_at(&record, 0);
            let len = (raw_len - raw_offset).min(chunk_size as u64);
            if stored_len == 0 || (stored_len as u64) > cur.remaining() {
                return Err(what(&format!(
                    "chunk {c} length {stored_len} does not fit the file"
                )));
            }
            if len > stored_len as u64 * codec.max_expansion() {
                return Err(what(&format!(
                    "chunk {c} claims {len} bytes from {stored_len}, more than {} can expand to",
                    codec.name()
                )));
            }
            if stored_len as u64 > codec.max_stored(len) {
                return Err(what(&format!(
                    "chunk {c} stores {stored_len} bytes for {len}, more than {} ever writes",
                    codec.name()
                )));
            }
            let chunk = ChunkInfo {
                offset: cur.pos,
                stored_len,
                raw_len: len as u32,
                checksum: u64_at(&record, 4),
            };
            push(&mut layout.chunks, chunk, "a chunk table")?;
            cur.pos += stored_len as u64;
            raw_offset += len;
        }
    }
    Ok(layout)
}

fn check_header<S: Source + ?Sized>(
    cur: &mut Cursor<'_, S>,
    hashed: &[u8],
    index: usize,
    what: &dyn Fn(&str) -> Error,
) -> Result<()> {
    let stored: [u8; 8] = cur.take()?;
    if checksum64(hashed, header_seed(index)) != u64::from_le_bytes(stored) {
        return Err(what("header checksum mismatch"));
    }
    Ok(())
}

/// Decode one section into `out` (exactly `section.raw_len` bytes), checking
/// every chunk's checksum, on up to `threads` threads.
pub fn read_section<S: Source + ?Sized>(
    src: &S,
    section: &SectionLayout,
    out: &mut [u8],
    threads: usize,
) -> Result<()> {
    if out.len() as u64 != section.raw_len {
        return Err(Error::Invalid(format!(
            "output of {} bytes for a section of {}",
            out.len(),
            section.raw_len
        )));
    }
    let bad_chunk = |c: usize| {
        Error::corrupt(format!(
            "section {} chunk {c} checksum mismatch",
            section.index
        ))
    };
    let mut pieces = Vec::new();
    pieces
        .try_reserve_exact(section.chunks.len())
        .map_err(|_| Error::no_memory(16 * section.chunks.len() as u64, "a chunk table"))?;
    let mut rest = out;
    for chunk in &section.chunks {
        let (piece, tail) = rest.split_at_mut(chunk.raw_len as usize);
        pieces.push(piece);
        rest = tail;
    }
    let jobs = pieces.into_iter().zip(section.chunks.iter()).enumerate();
    let threads = threads_for(section.raw_len, threads);
    work_queue::for_each(jobs, threads, |(c, (piece, chunk))| {
        let seed = chunk_seed(section.index, c as u64);
        if section.codec == Codec::Raw {
            src.read_at(chunk.offset, piece)?;
            if !section.unverified && checksum64(piece, seed) != chunk.checksum {
                return Err(bad_chunk(c));
            }
        } else {
            let mut stored = zeroed(chunk.stored_len as u64, "a stored chunk")?;
            src.read_at(chunk.offset, &mut stored)?;
            if checksum64(&stored, seed) != chunk.checksum {
                return Err(bad_chunk(c));
            }
            section
                .codec
                .decompress_into(&stored, piece)
                .map_err(|err| match err {
                    Error::Memory(_) => err,
                    _ => Error::corrupt(format!("section {} chunk {c}: {err}", section.index)),
                })?;
        }
        Ok(())
    })
}

/// Mark every uncompressed buffer section of the container in `file` as
/// unverified, before its data is mapped for writing (`mmap_mode='r+'`): writes
/// through the map would otherwise make later loads fail their checksums.
pub fn mark_unverified(file: &File) -> Result<()> {
    let src = FileSource::new(file.try_clone()?)?;
    let layout = parse(&src)?;
    for section in &layout.sections {
        if section.kind != SectionKind::Buffer || section.codec != Codec::Raw || section.unverified
        {
            continue;
        }
        let hashed_len = SECTION_FIXED_LEN as usize + 8 * section.chunks.len();
        let mut hashed = zeroed(hashed_len as u64, "a checksum table")?;
        src.read_at(section.header_offset, &mut hashed)?;
        hashed[2..4].copy_from_slice(&FLAG_UNVERIFIED.to_le_bytes());
        let sum = checksum64(&hashed, header_seed(section.index));
        file.write_all_at(&hashed[2..4], section.header_offset + 2)?;
        file.write_all_at(
            &sum.to_le_bytes(),
            section.header_offset + hashed_len as u64,
        )?;
    }
    Ok(())
}
