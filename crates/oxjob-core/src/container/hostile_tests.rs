//! Compressed chunks are checked before anything is allocated for them: damaged
//! files, and files with valid checksums whose chunks cannot decode to what their
//! records claim, fail as corrupt without their claimed size being asked for.

use super::*;
use crate::buffer::{largest_asked, with_limit};
use crate::codec::Codec;
use crate::hash::checksum64;
use crate::Error;

const COMPRESSED: [Codec; 4] = [Codec::Zstd, Codec::Lz4, Codec::Zlib, Codec::Gzip];

fn encode(codec: Codec, buffer: &[u8]) -> Vec<u8> {
    let sections = [
        Section {
            kind: SectionKind::Pickle,
            data: b"\x80\x05stream",
        },
        Section {
            kind: SectionKind::Buffer,
            data: buffer,
        },
    ];
    let opts = WriteOptions {
        codec,
        level: 1,
        threads: 2,
    };
    let mut out = Vec::new();
    write(&mut out, &sections, &opts).expect("write");
    out
}

/// A container of one compressed section claiming `raw_len` bytes in chunks of
/// `chunk_size`, holding `chunks` as stored: every checksum valid.
fn forged(codec: Codec, chunk_size: u32, raw_len: u64, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let sum = checksum64(&out, 0);
    out.extend_from_slice(&sum.to_le_bytes());
    let mut fixed = vec![SectionKind::Pickle as u8, codec as u8, 0, 0];
    fixed.extend_from_slice(&chunk_size.to_le_bytes());
    fixed.extend_from_slice(&raw_len.to_le_bytes());
    fixed.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&fixed);
    out.extend_from_slice(&checksum64(&fixed, header_seed(0)).to_le_bytes());
    for (c, stored) in chunks.iter().enumerate() {
        out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        out.extend_from_slice(&checksum64(stored, chunk_seed(0, c as u64)).to_le_bytes());
        out.extend_from_slice(stored);
    }
    let total = out.len() as u64 + END_LEN;
    out.extend_from_slice(&END_MAGIC);
    out.extend_from_slice(&total.to_le_bytes());
    out
}

/// Decode `file`, returning the outcome and the largest output buffer asked for.
fn decode(file: &[u8]) -> (Result<(), Error>, u64) {
    let (result, largest) = largest_asked(|| read_all(file, 2));
    (result.map(|_| ()), largest)
}

fn assert_corrupt_unallocated(file: &[u8], claimed: u64, want: &str) {
    let (result, largest) = decode(file);
    match result {
        Err(Error::Corrupt(msg)) => assert!(msg.contains(want), "{msg:?} lacks {want:?}"),
        other => panic!("{other:?}, expected a corrupt file ({want})"),
    }
    assert!(
        largest < claimed / 64,
        "{largest} bytes asked for before a {claimed}-byte claim was refused"
    );
}

#[test]
fn a_damaged_chunk_is_found_before_the_output_is_allocated() {
    // 16 MiB of zeros stores in a few KB (zstd) to 64 KB (lz4): the damaged last
    // chunk used to be found after all 16 MiB were allocated and the chunks before
    // it inflated into them.
    let zeros = vec![0u8; 16 << 20];
    for codec in COMPRESSED {
        let file = encode(codec, &zeros);
        let layout = parse(&file[..]).expect("parse");
        let last = layout.sections[1].chunks.last().expect("chunks");
        for at in [
            0,
            last.stored_len as usize / 2,
            last.stored_len as usize - 1,
        ] {
            let mut bad = file.clone();
            bad[last.offset as usize + at] ^= 0x20;
            assert_corrupt_unallocated(&bad, 16 << 20, "checksum mismatch");
        }
        let (result, largest) = decode(&file);
        assert!(
            result.is_ok() && largest == 16 << 20,
            "{codec:?}: {result:?}"
        );
    }
}

#[test]
fn chunks_that_are_not_their_codec_are_corrupt_before_allocation() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    for codec in COMPRESSED {
        // 4 KiB claiming 64 MiB is within every codec's ratio but lz4's.
        let claim = 4096 * codec.max_expansion().min(16384);
        let file = forged(codec, MAX_CHUNK, claim, std::slice::from_ref(&garbage));
        assert_corrupt_unallocated(&file, claim, &format!("{} chunk", codec.name()));
    }
}

/// A zstd frame decoding to `raw` bytes of a raw block then `n` zeros in RLE
/// blocks, with the frame header (descriptor and the fields after it) `head`.
fn zstd_frame(head: &[u8], raw: u32, mut n: u64) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    frame.extend_from_slice(head);
    if raw > 0 {
        frame.extend_from_slice(&(raw << 3).to_le_bytes()[..3]);
        frame.resize(frame.len() + raw as usize, 0);
    }
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

#[test]
fn zstd_frames_must_agree_with_their_records() {
    let claim: u64 = 60 << 20;
    // An honest frame (no content size, 1 MiB window) decodes.
    let honest = zstd_frame(&[0x00, 0x50], 0, claim);
    let file = forged(Codec::Zstd, MAX_CHUNK, claim, &[honest]);
    assert!(decode(&file).0.is_ok());
    // Blocks that decode to 1 MiB, in a chunk claiming 60 MiB.
    let short = zstd_frame(&[0x00, 0x50], 4000, 1 << 20);
    let file = forged(Codec::Zstd, MAX_CHUNK, claim, &[short]);
    assert_corrupt_unallocated(&file, claim, "blocks decode to");
    // A content size that is not the claim.
    let mut head = vec![0x80, 0x50];
    head.extend_from_slice(&(1u32 << 20).to_le_bytes());
    let file = forged(
        Codec::Zstd,
        MAX_CHUNK,
        claim,
        &[zstd_frame(&head, 0, claim)],
    );
    assert_corrupt_unallocated(&file, claim, "frame says it decodes to 1048576");
    // A window larger than zstd allows: refused as corrupt, not as out of memory.
    let huge_window = zstd_frame(&[0x00, 0xf8], 0, 100);
    let file = forged(
        Codec::Zstd,
        MAX_CHUNK,
        100,
        std::slice::from_ref(&huge_window),
    );
    let (result, _) = decode(&file);
    assert!(
        matches!(&result, Err(Error::Corrupt(m)) if m.contains("window")),
        "{result:?}"
    );
    let mut out = [0u8; 100];
    assert!(matches!(
        Codec::Zstd.decompress_into(&huge_window, &mut out),
        Err(Error::Corrupt(_))
    ));
    // A trailing second frame, and an RLE block larger than a block may be.
    let mut two = zstd_frame(&[0x00, 0x50], 0, 1000);
    two.extend(zstd_frame(&[0x00, 0x50], 0, 1000));
    let file = forged(Codec::Zstd, MAX_CHUNK, 2000, &[two]);
    assert!(matches!(decode(&file).0, Err(Error::Corrupt(m)) if m.contains("after the frame")));
    let mut big_rle = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50];
    big_rle.extend_from_slice(&(1u32 | (1 << 1) | (200_000 << 3)).to_le_bytes()[..3]);
    big_rle.push(0);
    let file = forged(Codec::Zstd, MAX_CHUNK, 200_000, &[big_rle]);
    assert_corrupt_unallocated(&file, 200_000, "more than 131072");
}

#[test]
fn lz4_and_gzip_sizes_are_read_from_their_framing() {
    let data = vec![9u8; 1 << 20];
    let stored = Codec::Lz4.compress(&data, 1).expect("lz4");
    for claim in [(1 << 20) - 1, (1 << 20) + 1, (1 << 20) + 100] {
        let file = forged(Codec::Lz4, MAX_CHUNK, claim, std::slice::from_ref(&stored));
        let (result, largest) = decode(&file);
        assert!(
            matches!(&result, Err(Error::Corrupt(m)) if m.contains("block decodes to")),
            "{result:?}"
        );
        assert_eq!(largest, 0);
    }
    let stored = Codec::Gzip.compress(&data, 1).expect("gzip");
    let file = forged(
        Codec::Gzip,
        MAX_CHUNK,
        2 << 20,
        std::slice::from_ref(&stored),
    );
    assert_corrupt_unallocated(&file, 2 << 20, "member says it decodes to 1048576");
    // A zlib header asking for a preset dictionary.
    let mut stored = Codec::Zlib.compress(&data, 1).expect("zlib");
    stored[1] |= 0x20;
    stored[1] += (31 - ((u16::from(stored[0]) << 8 | u16::from(stored[1])) % 31) as u8) % 31;
    let file = forged(
        Codec::Zlib,
        MAX_CHUNK,
        1 << 20,
        std::slice::from_ref(&stored),
    );
    assert!(matches!(decode(&file).0, Err(Error::Corrupt(m)) if m.contains("dictionary")));
}

#[test]
fn well_framed_garbage_beyond_memory_is_corrupt_not_out_of_memory() {
    // Valid checksums and a valid header, then deflate data that does not decode:
    // when the claimed 4 MiB cannot be had, the chunks are inflated into a scratch
    // buffer to tell a damaged file from a large one.
    let mut stored = vec![0x78, 0x01];
    stored.extend((0..8000u32).map(|i| (i * 13 + 5) as u8 | 0x06));
    for codec in [Codec::Zlib, Codec::Gzip] {
        let mut chunk = stored.clone();
        if codec == Codec::Gzip {
            chunk = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
            chunk.extend_from_slice(&stored[2..]);
            chunk.extend_from_slice(&[0, 0, 0, 0]);
            chunk.extend_from_slice(&(4u32 << 20).to_le_bytes());
        }
        let file = forged(codec, MAX_CHUNK, 4 << 20, &[chunk]);
        let result = with_limit(1 << 20, || read_all(&file[..], 2)).map(|_| ());
        assert!(
            matches!(&result, Err(Error::Corrupt(m)) if m.contains("section 0 chunk 0")),
            "{codec:?}: {result:?}"
        );
    }
    // An honest file too large for the limit is still out of memory.
    let file = encode(Codec::Zstd, &vec![1u8; 4 << 20]);
    let result = with_limit(1 << 20, || read_all(&file[..], 2)).map(|_| ());
    assert!(matches!(result, Err(Error::Memory(_))), "{result:?}");
}
