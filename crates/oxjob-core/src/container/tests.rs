use super::*;
use crate::codec::Codec;
use crate::Error;

const CODECS: [Codec; 5] = [
    Codec::Raw,
    Codec::Zstd,
    Codec::Lz4,
    Codec::Zlib,
    Codec::Gzip,
];

fn sample_buffers() -> (Vec<u8>, Vec<Vec<u8>>) {
    let pickle = b"\x80\x05fake pickle stream".to_vec();
    let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i / 1000) as u8).collect();
    (pickle, vec![vec![], vec![7u8; 10], big])
}

fn encode(codec: Codec, pickle: &[u8], buffers: &[Vec<u8>]) -> Vec<u8> {
    let mut sections = vec![Section {
        kind: SectionKind::Pickle,
        data: pickle,
    }];
    sections.extend(buffers.iter().map(|b| Section {
        kind: SectionKind::Buffer,
        data: b,
    }));
    let opts = WriteOptions {
        codec,
        level: if codec == Codec::Raw { 0 } else { 3 },
        threads: 3,
    };
    let mut out = Vec::new();
    let written = write(&mut out, &sections, &opts).expect("write");
    assert_eq!(written as usize, out.len());
    out
}

#[test]
fn round_trip_every_codec() {
    let (pickle, buffers) = sample_buffers();
    for codec in CODECS {
        let bytes = encode(codec, &pickle, &buffers);
        let (layout, decoded) = read_all(&bytes[..], 2).expect("read");
        assert_eq!(layout.end as usize, bytes.len());
        assert_eq!(decoded[0], pickle[..]);
        assert!(decoded[1..].iter().eq(buffers.iter()), "{codec:?}");
    }
}

#[test]
fn raw_buffers_are_page_aligned_and_mappable() {
    let (pickle, buffers) = sample_buffers();
    let bytes = encode(Codec::Raw, &pickle, &buffers);
    let layout = parse(&bytes[..]).expect("parse");
    for (section, buffer) in layout.sections[1..].iter().zip(&buffers) {
        assert_eq!(section.data_offset % ALIGN, 0);
        let at = section.data_offset as usize;
        assert_eq!(&bytes[at..at + buffer.len()], &buffer[..]);
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let pickle = b"\x80\x05small".to_vec();
    let buffers = vec![
        vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9],
        (0..3000u32).map(|i| i as u8).collect(),
    ];
    for codec in CODECS {
        let bytes = encode(codec, &pickle, &buffers);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let result = read_all(&bad[..], 1);
            assert!(
                matches!(result, Err(Error::Corrupt(_))),
                "{codec:?}: flip at {at} of {} not detected",
                bytes.len()
            );
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let (pickle, buffers) = (b"p".to_vec(), vec![vec![3u8; 5000]]);
    for codec in CODECS {
        let bytes = encode(codec, &pickle, &buffers);
        for len in 0..bytes.len() {
            assert!(
                matches!(read_all(&bytes[..len], 1), Err(Error::Corrupt(_))),
                "{codec:?}: truncation to {len} not detected"
            );
        }
    }
}

#[test]
fn messages_name_the_failure() {
    let bytes = encode(Codec::Zstd, b"p", &[vec![1u8; 100]]);
    let msg = |data: &[u8]| {
        read_all(data, 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        msg(b"hello world, this is not a container"),
        "not an oxjob file (bad magic)"
    );
    assert!(msg(&bytes[..40]).starts_with("truncated"));
    let mut bad = bytes.clone();
    let last_data = bytes.len() - 20;
    bad[last_data] ^= 1;
    assert!(msg(&bad).contains("checksum mismatch"), "{}", msg(&bad));
}

#[test]
fn hostile_lengths_do_not_allocate() {
    // A raw section that claims an exabyte must fail before any allocation.
    let mut bytes = encode(Codec::Raw, b"p", &[]);
    let raw_len_at = PREAMBLE_LEN as usize + 8;
    bytes[raw_len_at..raw_len_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(parse(&bytes[..]), Err(Error::Corrupt(_))));
    // A compressed section that claims more than its chunks can expand to.
    let mut bytes = encode(Codec::Lz4, b"pickle", &[]);
    bytes[raw_len_at..raw_len_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(parse(&bytes[..]), Err(Error::Corrupt(_))));
}

#[test]
fn trailing_bytes_are_left_to_the_caller() {
    let mut bytes = encode(Codec::Raw, b"p", &[]);
    let len = bytes.len() as u64;
    bytes.extend_from_slice(b"next object");
    assert_eq!(parse(&bytes[..]).map(|l| l.end).ok(), Some(len));
}

#[test]
fn layout_rules_are_enforced_on_write() {
    let sections = [Section {
        kind: SectionKind::Buffer,
        data: b"x",
    }];
    assert!(matches!(
        write(&mut Vec::new(), &sections, &WriteOptions::default()),
        Err(Error::Invalid(_))
    ));
    let sections = [Section {
        kind: SectionKind::Pickle,
        data: b"x",
    }];
    let opts = WriteOptions {
        codec: Codec::Zlib,
        level: 12,
        threads: 1,
    };
    assert!(matches!(
        write(&mut Vec::new(), &sections, &opts),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn unverified_sections_skip_data_checksums_only() {
    let bytes = encode(Codec::Raw, b"pickle", &[vec![5u8; 10_000]]);
    let dir = std::env::temp_dir().join(format!("oxjob-core-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("unverified.oxjob");
    std::fs::write(&path, &bytes).expect("write");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    mark_unverified(&file).expect("mark");
    let mut changed = std::fs::read(&path).expect("read");
    let layout = parse(&changed[..]).expect("parse");
    assert!(layout.sections[1].unverified && !layout.sections[0].unverified);
    let at = layout.sections[1].data_offset as usize;
    changed[at] = 9;
    let (_, decoded) = read_all(&changed[..], 1).expect("data edits are allowed");
    assert_eq!(decoded[1][0], 9);
    // The pickle section is still checked.
    changed[PREAMBLE_LEN as usize + 24 + 8 + 8] ^= 1;
    assert!(matches!(read_all(&changed[..], 1), Err(Error::Corrupt(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sections_beyond_memory_are_memory_errors_unless_damaged() {
    let (pickle, buffers) = sample_buffers();
    for codec in CODECS {
        let bytes = encode(codec, &pickle, &buffers);
        // The 5 MiB buffer (section 3) does not fit; the smaller ones do.
        let err = crate::buffer::with_limit(1 << 20, || read_all(&bytes[..], 2)).err();
        let want = format!("cannot allocate {} bytes for section 3", 5u32 << 20);
        assert!(
            matches!(&err, Some(Error::Memory(m)) if *m == want),
            "{codec:?}: {err:?}"
        );
        // The same file with a damaged chunk in that section is reported as damaged.
        let layout = parse(&bytes[..]).expect("parse");
        let chunk = &layout.sections[3].chunks[1];
        let mut bad = bytes.clone();
        bad[chunk.offset as usize + 5] ^= 0x10;
        let err = crate::buffer::with_limit(1 << 20, || read_all(&bad[..], 2)).err();
        let want = "section 3 chunk 1 checksum mismatch";
        assert!(
            matches!(&err, Some(Error::Corrupt(m)) if m == want),
            "{codec:?}: {err:?}"
        );
    }
}

#[test]
fn chunks_storing_more_than_their_codec_writes_are_corrupt() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let bytes = encode(Codec::Zstd, b"\x80\x05", &[vec![7u8; 10], noise]);
    let layout = parse(&bytes[..]).expect("parse");
    // Section 1 (10 bytes) has one chunk; claim it stores 50 000 bytes (which the
    // file holds, as the next section follows), checksums kept valid.
    let record = layout.sections[1].chunks[0].offset as usize - CHUNK_RECORD_LEN as usize;
    let mut bad = bytes.clone();
    bad[record..record + 4].copy_from_slice(&50_000u32.to_le_bytes());
    let msg = parse(&bad[..])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("stores 50000 bytes for 10"), "{msg}");
}
