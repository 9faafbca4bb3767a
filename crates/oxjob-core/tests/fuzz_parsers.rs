//! A bounded mutation fuzzer for the parsers (container decoder, frame headers,
//! `Forget` bodies), and a generator of containers with valid checksums and
//! hostile sizes, run by `cargo test`.
//!
//! The toolchain on CI cannot be assumed to run `cargo fuzz` (nightly + sanitizers),
//! so this harness mutates the committed corpus with a seeded PRNG for a bounded
//! time (`OXJOB_FUZZ_SECONDS`, default 5) and checks the same properties as the
//! libFuzzer targets in `fuzz/`.

use oxjob_core::codec::Codec;
use oxjob_core::container::{write, Section, SectionKind, WriteOptions};
use oxjob_core::fuzzing::{check_frame, check_hostile, check_mutated, Outcome};
use oxjob_core::workers::dropped;
use oxjob_core::workers::frame::{Header, Kind};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/container");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(seeds.len() >= 4, "fuzz corpus missing in {}", dir.display());
    for codec in [
        Codec::Raw,
        Codec::Zstd,
        Codec::Lz4,
        Codec::Zlib,
        Codec::Gzip,
    ] {
        let buffer: Vec<u8> = (0..9000u32).map(|i| (i % 17) as u8).collect();
        let sections = [
            Section {
                kind: SectionKind::Pickle,
                data: b"\x80\x05stream",
            },
            Section {
                kind: SectionKind::Buffer,
                data: &buffer,
            },
        ];
        let opts = WriteOptions {
            codec,
            level: 1,
            threads: 1,
        };
        let mut out = Vec::new();
        if write(&mut out, &sections, &opts).is_ok() {
            seeds.push(out);
        }
    }
    seeds
}

const INTERESTING: [u64; 8] = [0, 1, 0xff, 0xffff, 0xffff_ffff, u64::MAX, 1 << 31, 4096];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    if input.is_empty() {
        input.push(rng.next() as u8);
        return;
    }
    for _ in 0..=rng.below(3) {
        let at = rng.below(input.len());
        match rng.below(6) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input[at] = rng.next() as u8,
            2 => input.truncate(at),
            3 => {
                let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let width = [1usize, 2, 4, 8][rng.below(4)];
                for (i, byte) in value.iter().take(width).enumerate() {
                    if let Some(slot) = input.get_mut(at + i) {
                        *slot = *byte;
                    }
                }
            }
            4 => {
                let extra: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, extra);
            }
            _ => {
                let end = (at + rng.below(256)).min(input.len());
                let copy = input[at..end].to_vec();
                let to = rng.below(input.len());
                input.splice(to..to, copy);
            }
        }
        if input.is_empty() {
            return;
        }
    }
}

/// Mutate `seeds` and check each input for `seconds` (`OXJOB_FUZZ_SECONDS` in all,
/// shared out by `share`); returns how many inputs were checked.
fn fuzz(seeds: &[Vec<u8>], share: f64, check: fn(&[u8])) -> u64 {
    let seconds: f64 = std::env::var("OXJOB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds * share);
    for seed in seeds {
        check(seed);
    }
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mut runs = 0u64;
    while runs == 0 || Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input);
        check(&input);
        runs += 1;
    }
    runs
}

#[test]
fn mutated_containers_never_crash_or_overallocate() {
    let runs = fuzz(&corpus(), 0.5, check_mutated);
    println!("{runs} mutated containers decoded without a crash");
}

#[test]
fn mutated_frames_never_crash_and_decode_canonically() {
    let header = Header {
        kind: Kind::Batch,
        tag: 7,
        len: 4096,
        n_fds: 3,
        n_shared: 1,
    };
    let mut with_body = header.encode().to_vec();
    with_body.extend(dropped::encode(&[(1, 2), (3, 4)]));
    let seeds = vec![
        header.encode().to_vec(),
        with_body,
        dropped::encode(&[(0x0fd, 0xabcdef)]),
    ];
    let runs = fuzz(&seeds, 0.2, check_frame);
    println!("{runs} mutated frames decoded without a crash");
}

#[test]
fn containers_with_valid_checksums_and_hostile_sizes_fail_cleanly() {
    let seconds: f64 = std::env::var("OXJOB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds * 0.3);
    let mut rng = Rng(0x0DDB_A11C_0FFE_E000);
    let mut seen = [0u64; 4];
    while seen.iter().sum::<u64>() < 2000 || Instant::now() < deadline {
        let len = rng.below(160);
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let outcome = check_hostile(&input);
        seen[outcome as usize] += 1;
    }
    println!("hostile containers: {seen:?} (rejected, parsed, decoded, too large)");
    // The generator must get past the structure checks, or it tests nothing new.
    let total = seen.iter().sum::<u64>();
    assert!(seen[Outcome::Parsed as usize] * 20 > total, "{seen:?}");
    assert!(seen[Outcome::Decoded as usize] * 50 > total, "{seen:?}");
    // ... and some must take the out-of-memory path with a valid file behind it.
    assert!(seen[Outcome::Large as usize] * 200 > total, "{seen:?}");
}
