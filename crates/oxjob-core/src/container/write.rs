//! Writing containers.

use super::{
    chunk_seed, header_seed, padding_for, threads_for, Section, SectionKind, COMPRESSED_CHUNK,
    END_MAGIC, MAGIC, PREAMBLE_LEN, RAW_CHUNK, SECTION_FIXED_LEN, VERSION,
};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::hash::checksum64;
use crate::work_queue;
use std::io::Write;

/// How to write a container.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// Codec of every section ([`Codec::Raw`] for none).
    pub codec: Codec,
    /// Codec level (checked with [`Codec::check_level`]).
    pub level: i32,
    /// Threads used to compress and checksum.
    pub threads: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            codec: Codec::Raw,
            level: 0,
            threads: work_queue::default_threads(),
        }
    }
}

/// A sink that counts bytes, so that padding can be computed for any writer.
struct Counted<'w, W: Write> {
    inner: &'w mut W,
    written: u64,
}

impl<W: Write> Counted<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Write `sections` as one container to `sink`; returns the number of bytes written.
///
/// The first section must be the pickle stream and the others its buffers.
pub fn write<W: Write>(sink: &mut W, sections: &[Section<'_>], opts: &WriteOptions) -> Result<u64> {
    opts.codec.check_level(opts.level)?;
    if sections.first().map(|s| s.kind) != Some(SectionKind::Pickle)
        || sections[1..].iter().any(|s| s.kind != SectionKind::Buffer)
    {
        return Err(Error::Invalid(
            "a container holds one pickle section followed by buffer sections".into(),
        ));
    }
    let n_sections = u32::try_from(sections.len())
        .map_err(|_| Error::Invalid("too many buffers for one container".into()))?;
    let mut out = Counted {
        inner: sink,
        written: 0,
    };

    let mut preamble = Vec::with_capacity(PREAMBLE_LEN as usize);
    preamble.extend_from_slice(&MAGIC);
    preamble.extend_from_slice(&VERSION.to_le_bytes());
    preamble.extend_from_slice(&0u16.to_le_bytes());
    preamble.extend_from_slice(&n_sections.to_le_bytes());
    preamble.extend_from_slice(&0u64.to_le_bytes());
    let sum = checksum64(&preamble, 0);
    preamble.extend_from_slice(&sum.to_le_bytes());
    out.put(&preamble)?;

    for (index, section) in sections.iter().enumerate() {
        let threads = threads_for(section.data.len() as u64, opts.threads);
        if opts.codec == Codec::Raw {
            write_raw_section(&mut out, index, section, threads)?;
        } else {
            let opts = WriteOptions { threads, ..*opts };
            write_compressed_section(&mut out, index, section, &opts)?;
        }
    }

    let total = out.written + END_MAGIC.len() as u64 + 8;
    out.put(&END_MAGIC)?;
    out.put(&total.to_le_bytes())?;
    out.inner.flush()?;
    Ok(out.written)
}

fn fixed_header(section: &Section<'_>, codec: Codec, chunk_size: u32, padding: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(SECTION_FIXED_LEN as usize + 8);
    header.push(section.kind as u8);
    header.push(codec as u8);
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&chunk_size.to_le_bytes());
    header.extend_from_slice(&(section.data.len() as u64).to_le_bytes());
    header.extend_from_slice(&padding.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header
}

fn write_raw_section<W: Write>(
    out: &mut Counted<'_, W>,
    index: usize,
    section: &Section<'_>,
    threads: usize,
) -> Result<()> {
    let chunks: Vec<&[u8]> = section.data.chunks(RAW_CHUNK as usize).collect();
    let sums = work_queue::map(chunks.len(), threads, |c| {
        Ok::<_, Error>(checksum64(chunks[c], chunk_seed(index, c as u64)))
    })?;
    let header_end = out.written + SECTION_FIXED_LEN + 8 * sums.len() as u64 + 8;
    // Only buffers are aligned: they are what gets memory-mapped.
    let padding = match section.kind {
        SectionKind::Buffer => padding_for(header_end),
        SectionKind::Pickle => 0,
    };
    let mut header = fixed_header(section, Codec::Raw, RAW_CHUNK, padding as u32);
    for sum in &sums {
        header.extend_from_slice(&sum.to_le_bytes());
    }
    let sum = checksum64(&header, header_seed(index));
    header.extend_from_slice(&sum.to_le_bytes());
    header.resize(header.len() + padding as usize, 0);
    out.put(&header)?;
    out.put(section.data)
}

fn write_compressed_section<W: Write>(
    out: &mut Counted<'_, W>,
    index: usize,
    section: &Section<'_>,
    opts: &WriteOptions,
) -> Result<()> {
    let mut header = fixed_header(section, opts.codec, COMPRESSED_CHUNK, 0);
    let sum = checksum64(&header, header_seed(index));
    header.extend_from_slice(&sum.to_le_bytes());
    out.put(&header)?;

    let chunks: Vec<&[u8]> = section.data.chunks(COMPRESSED_CHUNK as usize).collect();
    // Compress a window of chunks at a time: all threads stay busy while memory
    // stays bounded by the window, not by the section.
    let window = opts.threads.max(1) * 4;
    for (window_index, group) in chunks.chunks(window).enumerate() {
        let first = window_index * window;
        let stored = work_queue::map(group.len(), opts.threads, |i| {
            opts.codec.compress(group[i], opts.level)
        })?;
        for (i, bytes) in stored.iter().enumerate() {
            let stored_len = u32::try_from(bytes.len())
                .map_err(|_| Error::Invalid("compressed chunk larger than 4 GiB".into()))?;
            let sum = checksum64(bytes, chunk_seed(index, (first + i) as u64));
            let mut record = [0u8; 12];
            record[..4].copy_from_slice(&stored_len.to_le_bytes());
            record[4..].copy_from_slice(&sum.to_le_bytes());
            out.put(&record)?;
            out.put(bytes)?;
        }
    }
    Ok(())
}
