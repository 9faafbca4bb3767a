//! Chunk codecs.
//!
//! Each chunk of a container section is compressed on its own, so chunks can be
//! compressed and decompressed on several threads and checked one by one.

use crate::error::{Error, Result};
use std::io::{Read, Write};

mod framing;

/// A chunk codec. The discriminant is the byte stored in the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is (and 4 KiB aligned, so that it can be memory-mapped).
    Raw = 0,
    /// Zstandard: the default when compression is asked for.
    Zstd = 1,
    /// LZ4 block format: fastest, lowest ratio; has no levels.
    Lz4 = 2,
    /// zlib (RFC 1950) stream per chunk.
    Zlib = 3,
    /// gzip (RFC 1952) member per chunk.
    Gzip = 4,
}

/// Names accepted by [`Codec::from_name`], in the order shown to users.
pub const CODEC_NAMES: [&str; 5] = ["zstd", "lz4", "zlib", "gzip", "raw"];

impl Codec {
    /// The codec stored under `byte`, if any.
    pub fn from_byte(byte: u8) -> Option<Codec> {
        match byte {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Lz4),
            3 => Some(Codec::Zlib),
            4 => Some(Codec::Gzip),
            _ => None,
        }
    }

    /// The codec called `name` (see [`CODEC_NAMES`]).
    pub fn from_name(name: &str) -> Result<Codec> {
        match name {
            "zstd" => Ok(Codec::Zstd),
            "lz4" => Ok(Codec::Lz4),
            "zlib" => Ok(Codec::Zlib),
            "gzip" => Ok(Codec::Gzip),
            "raw" => Ok(Codec::Raw),
            other => Err(Error::Invalid(format!(
                "unknown codec {other:?}; accepted: {}",
                CODEC_NAMES.join(", ")
            ))),
        }
    }

    /// The user-facing name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Zstd => "zstd",
            Codec::Lz4 => "lz4",
            Codec::Zlib => "zlib",
            Codec::Gzip => "gzip",
        }
    }

    /// The largest number of output bytes one input byte can legitimately stand
    /// for. The decoder refuses a chunk that claims more, so a small hostile file
    /// cannot make it allocate much more memory than its bytes can justify.
    pub fn max_expansion(self) -> u64 {
        match self {
            Codec::Raw => 1,
            // An lz4 match byte extends a match by at most 255 bytes.
            Codec::Lz4 => 256,
            // A deflate code of at least one bit yields at most 258 bytes.
            Codec::Zlib | Codec::Gzip => 1032,
            // A 3-byte RLE block header plus one byte yields a 128 KiB block.
            Codec::Zstd => 32 * 1024,
        }
    }

    /// The most stored bytes this codec ever writes for a chunk of `raw_len` bytes.
    /// The decoder refuses a chunk that claims to store more, so that a chunk
    /// record cannot make it reserve gigabytes for a chunk of a few megabytes.
    pub fn max_stored(self, raw_len: u64) -> u64 {
        match self {
            Codec::Raw => raw_len,
            // zstd and lz4 fall back to stored blocks: well under 1/64 of overhead.
            Codec::Zstd | Codec::Lz4 => raw_len + raw_len / 64 + 1024,
            // Fast deflate levels may code noise with the fixed Huffman table, where
            // half the byte values take 9 bits: up to 1/8 more.
            Codec::Zlib | Codec::Gzip => raw_len + raw_len / 4 + 1024,
        }
    }

    /// Check, without inflating anything, that `stored` is framed as this codec
    /// writes it and that its framing agrees with the `raw_len` bytes its chunk
    /// record claims (see `framing.rs`): run before the output is allocated.
    pub fn check_framing(self, stored: &[u8], raw_len: u64) -> Result<()> {
        framing::check(self, stored, raw_len)
            .map_err(|msg| Error::corrupt(format!("{} chunk: {msg}", self.name())))
    }

    /// Check `level` against the codec's range (lz4 accepts any level and ignores it).
    pub fn check_level(self, level: i32) -> Result<()> {
        let ok = match self {
            Codec::Raw | Codec::Lz4 => true,
            Codec::Zstd => (1..=22).contains(&level),
            Codec::Zlib | Codec::Gzip => (1..=9).contains(&level),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "compression level {level} is out of range for {}",
                self.name()
            )))
        }
    }

    /// Compress one chunk.
    pub fn compress(self, data: &[u8], level: i32) -> Result<Vec<u8>> {
        match self {
            Codec::Raw => Ok(data.to_vec()),
            Codec::Zstd => Ok(zstd::bulk::compress(data, level)?),
            Codec::Lz4 => Ok(lz4_flex::block::compress(data)),
            Codec::Zlib => {
                let mut enc = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(data.len() / 2),
                    flate2::Compression::new(level.clamp(0, 9) as u32),
                );
                enc.write_all(data)?;
                Ok(enc.finish()?)
            }
            Codec::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 2),
                    flate2::Compression::new(level.clamp(0, 9) as u32),
                );
                enc.write_all(data)?;
                Ok(enc.finish()?)
            }
        }
    }

    /// Decompress one chunk into `out`, which must be filled exactly: a chunk that
    /// decodes to fewer or more bytes is corrupt.
    pub fn decompress_into(self, stored: &[u8], out: &mut [u8]) -> Result<()> {
        let wrong_size =
            || Error::corrupt(format!("{} chunk does not decode to its size", self.name()));
        match self {
            Codec::Raw => {
                if stored.len() != out.len() {
                    return Err(wrong_size());
                }
                out.copy_from_slice(stored);
            }
            Codec::Zstd => {
                // `zstd::bulk` would panic if the context cannot be allocated.
                let mut context = zstd::zstd_safe::DCtx::try_create()
                    .ok_or_else(|| Error::Memory("cannot allocate a zstd decoder".into()))?;
                let written = context.decompress(out, stored).map_err(|code| {
                    let name = zstd::zstd_safe::get_error_name(code);
                    // Only a failed allocation is about memory: "Frame requires too
                    // much memory" is a window size the chunk's bytes chose.
                    if name.starts_with("Allocation error") {
                        Error::Memory(format!("zstd chunk: {name}"))
                    } else {
                        Error::corrupt(format!("zstd chunk: {name}"))
                    }
                })?;
                if written != out.len() {
                    return Err(wrong_size());
                }
            }
            Codec::Lz4 => {
                let written = lz4_flex::block::decompress_into(stored, out)
                    .map_err(|e| Error::corrupt(format!("lz4 chunk: {e}")))?;
                if written != out.len() {
                    return Err(wrong_size());
                }
            }
            Codec::Zlib => read_exactly(flate2::read::ZlibDecoder::new(stored), out, self)?,
            Codec::Gzip => read_exactly(flate2::read::GzDecoder::new(stored), out, self)?,
        }
        Ok(())
    }
}

fn read_exactly(mut reader: impl Read, out: &mut [u8], codec: Codec) -> Result<()> {
    reader
        .read_exact(out)
        .map_err(|e| Error::corrupt(format!("{} chunk: {e}", codec.name())))?;
    let mut probe = [0u8; 1];
    match reader.read(&mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::corrupt(format!(
            "{} chunk decodes to more than its size",
            codec.name()
        ))),
        Err(e) => Err(Error::corrupt(format!("{} chunk: {e}", codec.name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 5] = [
        Codec::Raw,
        Codec::Zstd,
        Codec::Lz4,
        Codec::Zlib,
        Codec::Gzip,
    ];

    #[test]
    fn round_trip_every_codec() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i / 7).to_le_bytes())
            .collect();
        for codec in ALL {
            let stored = codec.compress(&data, 3).expect("compress");
            let mut out = vec![0u8; data.len()];
            codec
                .decompress_into(&stored, &mut out)
                .expect("decompress");
            assert_eq!(out, data, "{codec:?}");
            assert!(
                (data.len() as u64) <= (stored.len() as u64).max(1) * codec.max_expansion(),
                "{codec:?} exceeds its own expansion bound"
            );
            assert!(stored.len() as u64 <= codec.max_stored(data.len() as u64));
        }
    }

    #[test]
    fn zeros_stay_within_expansion_bound() {
        let data = vec![0u8; 4 << 20];
        for codec in ALL {
            for level in [1, 3, 9] {
                let stored = codec.compress(&data, level).expect("compress");
                assert!(
                    (data.len() as u64) <= (stored.len() as u64) * codec.max_expansion(),
                    "{codec:?} level {level}: {} -> {}",
                    data.len(),
                    stored.len()
                );
            }
        }
    }

    #[test]
    fn incompressible_chunks_stay_within_stored_bound() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..(2 << 20) + 77)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for codec in ALL {
            for len in [0, 1, 100, 4096, noise.len()] {
                for level in [1, 9] {
                    let stored = codec.compress(&noise[..len], level).expect("compress");
                    assert!(
                        stored.len() as u64 <= codec.max_stored(len as u64),
                        "{codec:?} stores {} bytes for {len}",
                        stored.len()
                    );
                }
            }
        }
    }

    #[test]
    fn everything_written_passes_its_framing_check_and_wrong_sizes_do_not() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..(2 << 20) + 77)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let runs: Vec<u8> = (0..(2u32 << 20)).map(|i| (i / 5000) as u8).collect();
        let zeros = vec![0u8; 2 << 20];
        for codec in ALL {
            for data in [&noise[..], &runs[..], &zeros[..]] {
                for len in [1, 2, 100, 4096, 70_000, 1 << 20, data.len()] {
                    for level in [1, 3, 9] {
                        let stored = codec.compress(&data[..len], level).expect("compress");
                        let n = len as u64;
                        let check = |raw_len| codec.check_framing(&stored, raw_len);
                        assert!(check(n).is_ok(), "{codec:?} {len} {level}: {:?}", check(n));
                        if codec != Codec::Zlib {
                            // zlib's framing carries no size: the others must see the lie.
                            assert!(check(n + 1).is_err() && check(n - 1).is_err());
                        }
                    }
                }
            }
        }
        for level in [19, 22] {
            let stored = Codec::Zstd.compress(&runs, level).expect("compress");
            assert!(Codec::Zstd
                .check_framing(&stored, runs.len() as u64)
                .is_ok());
        }
    }

    #[test]
    fn wrong_size_is_corrupt() {
        for codec in ALL {
            let stored = codec.compress(b"hello hello hello", 3).expect("compress");
            let mut short = vec![0u8; 5];
            assert!(matches!(
                codec.decompress_into(&stored, &mut short),
                Err(Error::Corrupt(_))
            ));
            let mut long = vec![0u8; 100];
            assert!(matches!(
                codec.decompress_into(&stored, &mut long),
                Err(Error::Corrupt(_))
            ));
        }
    }

    #[test]
    fn names_round_trip_and_unknown_lists_accepted() {
        for name in CODEC_NAMES {
            assert_eq!(Codec::from_name(name).map(Codec::name).ok(), Some(name));
        }
        let msg = Codec::from_name("snappy").err().map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("unknown codec \"snappy\"; accepted: zstd, lz4, zlib, gzip, raw")
        );
    }
}
