//! Containers built from a fuzzer's bytes with every checksum valid and hostile
//! sizes: mutating a real file mostly trips a checksum before any size is read,
//! so this builder is what exercises the size checks and the allocation paths.

use crate::codec::Codec;
use crate::container::{
    chunk_seed, header_seed, padding_for, END_MAGIC, MAGIC, MAX_CHUNK, PREAMBLE_LEN, VERSION,
};
use crate::hash::checksum64;

/// The fuzzer's bytes read as a sequence of choices; past their end every choice is 0.
struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let byte = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        byte
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }

    /// True one time in `n`; never past the input's end, where choices are honest.
    fn rarely(&mut self, n: u8) -> bool {
        self.below(n) == n - 1
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
}

/// Chunk sizes the reader accepts, down to one byte and up to its limit.
const CHUNK_SIZES: [u32; 8] = [4096, 65536, 2 << 20, 4096, 1, 7, 65536, MAX_CHUNK];
/// The most data bytes a built section carries: sizes beyond it are claims only.
const MAX_DATA: u64 = 1 << 16;

fn hostile_len(c: &mut Choices<'_>, chunk_size: u32) -> u64 {
    let chunks = u64::from(chunk_size) * u64::from(c.below(4) + 1);
    match c.below(12) {
        0..=2 => u64::from(c.byte()),
        3 | 4 => u64::from(c.u32()) % 100_000,
        5 | 6 => chunks,
        7 => chunks + 1,
        8 => 1 << 40,
        9 => u64::MAX - u64::from(c.byte()),
        10 => c.u64(),
        _ => u64::from(c.u32()) << 16,
    }
}

/// `n` bytes of a pattern the choices pick (runs compress, the rest does not).
fn data(c: &mut Choices<'_>, n: u64) -> Vec<u8> {
    let seed = c.byte();
    (0..n.min(MAX_DATA))
        .map(|i| match seed % 3 {
            0 => 0,
            1 => seed,
            _ => (i as u8).wrapping_mul(31) ^ seed,
        })
        .collect()
}

/// A zstd frame of RLE blocks (4 bytes per 128 KiB) that decodes to `n` zeros:
/// the largest expansion zstd allows, as an honest chunk.
fn zstd_zeros(mut n: u64) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38];
    loop {
        let size = n.min(128 << 10);
        n -= size;
        let header = u32::from(n == 0) | (1 << 1) | ((size as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
        if n == 0 {
            return frame;
        }
    }
}

fn stored_chunk(c: &mut Choices<'_>, codec: Option<Codec>, len: u64) -> Vec<u8> {
    match (c.below(16), codec) {
        (0..=9, Some(codec)) => {
            let raw = data(c, len);
            codec.compress(&raw, 1).unwrap_or_default()
        }
        (10..=12, Some(Codec::Zstd)) | (13, _) => zstd_zeros(len.min(u64::from(MAX_CHUNK) + 1)),
        (10..=14, _) => {
            let n = c.byte();
            (0..n).map(|_| c.byte()).collect()
        }
        _ => Vec::new(),
    }
}

/// Build a container from `input`: the bytes pick the section count, kinds,
/// codecs, chunk sizes, claimed lengths, chunk records and stored bytes, hostile
/// values among them; every header and chunk checksum is valid.
pub fn hostile_container(input: &[u8]) -> Vec<u8> {
    let mut c = Choices {
        data: input,
        pos: 0,
    };
    let n_sections = 1 + usize::from(c.below(3));
    let claimed_sections = match c.rarely(32) {
        true => c.u32(),
        false => n_sections as u32,
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&claimed_sections.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let sum = checksum64(&out, 0);
    out.extend_from_slice(&sum.to_le_bytes());
    debug_assert_eq!(out.len() as u64, PREAMBLE_LEN);
    for index in 0..n_sections {
        section(&mut c, &mut out, index);
    }
    let total = match c.rarely(32) {
        true => c.u64(),
        false => out.len() as u64 + 16,
    };
    out.extend_from_slice(&END_MAGIC);
    out.extend_from_slice(&total.to_le_bytes());
    out
}

fn section(c: &mut Choices<'_>, out: &mut Vec<u8>, index: usize) {
    let kind = match (c.rarely(32), index) {
        (true, _) => c.byte(),
        (false, 0) => 1,
        (false, _) => 2,
    };
    let codec_byte = match c.rarely(32) {
        true => c.byte(), // mostly no codec at all
        false => c.below(5),
    };
    let codec = Codec::from_byte(codec_byte);
    let chunk_size = match c.rarely(32) {
        true => [0, MAX_CHUNK + 1, u32::MAX][usize::from(c.below(3))],
        false => CHUNK_SIZES[usize::from(c.below(CHUNK_SIZES.len() as u8))],
    };
    let raw_len = hostile_len(c, chunk_size);
    let n_chunks = raw_len.div_ceil(u64::from(chunk_size.max(1)));
    // Records for a few chunks only: a claim of more is backed by nothing.
    let present = match c.rarely(8) {
        true => n_chunks.min(u64::from(c.below(8))),
        false => n_chunks.min(64),
    };
    let mut fixed = vec![kind, codec_byte, 0, 0];
    fixed.extend_from_slice(&chunk_size.to_le_bytes());
    fixed.extend_from_slice(&raw_len.to_le_bytes());
    if codec == Some(Codec::Raw) {
        let body = data(c, raw_len);
        let mut table = Vec::new();
        // Every chunk of the data present is checksummed: then only the size checks
        // stand between a claim and the allocation.
        for piece in body.chunks(chunk_size.max(1) as usize) {
            let sum = checksum64(piece, chunk_seed(index, table.len() as u64 / 8));
            table.extend_from_slice(&sum.to_le_bytes());
        }
        let header_end = out.len() as u64 + 24 + table.len() as u64 + 8;
        let padding = match (c.rarely(16), kind) {
            (true, _) => u32::from(c.byte()),
            (false, 2) => padding_for(header_end) as u32,
            (false, _) => 0,
        };
        fixed.extend_from_slice(&padding.to_le_bytes());
        fixed.extend_from_slice(&0u32.to_le_bytes());
        let mut hashed = fixed;
        hashed.extend_from_slice(&table);
        let sum = checksum64(&hashed, header_seed(index));
        out.extend_from_slice(&hashed);
        out.extend_from_slice(&sum.to_le_bytes());
        out.resize(out.len() + padding as usize, 0);
        out.extend_from_slice(&body);
        return;
    }
    fixed.extend_from_slice(&[0; 8]);
    let sum = checksum64(&fixed, header_seed(index));
    out.extend_from_slice(&fixed);
    out.extend_from_slice(&sum.to_le_bytes());
    for chunk in 0..present {
        let start = chunk.saturating_mul(u64::from(chunk_size));
        let len = raw_len.saturating_sub(start).min(u64::from(chunk_size));
        let stored = stored_chunk(c, codec, len);
        let stored_len = match c.rarely(16) {
            true => c.u32(),
            false => stored.len() as u32,
        };
        out.extend_from_slice(&stored_len.to_le_bytes());
        out.extend_from_slice(&checksum64(&stored, chunk_seed(index, chunk)).to_le_bytes());
        out.extend_from_slice(&stored);
    }
}
