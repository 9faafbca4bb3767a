//! What a compressed chunk's own framing says about its size, read without
//! inflating anything.
//!
//! A chunk record claims how many bytes a chunk decodes to, and the section's
//! output is allocated from those claims. Each codec's framing tells, in one pass
//! over the stored bytes and without writing any output, whether the claim can be
//! right: a zstd frame carries its content size and the sizes of its blocks, an
//! lz4 block is a sequence of literal runs and matches whose lengths add up to the
//! output, a gzip member ends with the output's size. A chunk whose framing
//! disagrees with its record is corrupt, found before any memory is taken for it.
//! (zlib's framing says nothing about sizes: only its header is checked.)

use super::Codec;

/// Largest output of one zstd block (`Block_Maximum_Size`, RFC 8878 §3.1.1.2).
const ZSTD_BLOCK_MAX: u64 = 128 << 10;
/// Largest window a zstd decoder accepts on 64-bit (`ZSTD_WINDOWLOG_MAX_64`).
const ZSTD_WINDOW_MAX: u64 = 1 << 31;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Check `stored` against the `raw_len` bytes its record says it decodes to.
pub(super) fn check(codec: Codec, stored: &[u8], raw_len: u64) -> Result<(), String> {
    match codec {
        Codec::Raw if stored.len() as u64 == raw_len => Ok(()),
        Codec::Raw => Err(format!("{} bytes stored for {raw_len}", stored.len())),
        Codec::Zstd => zstd(stored, raw_len),
        Codec::Lz4 => lz4(stored, raw_len),
        Codec::Zlib => zlib(stored),
        Codec::Gzip => gzip(stored, raw_len),
    }
}

/// Little-endian bytes `at..at + n` of `bytes`, or an error naming `what`.
fn le(bytes: &[u8], at: usize, n: usize, what: &str) -> Result<u64, String> {
    let field = at
        .checked_add(n)
        .and_then(|end| bytes.get(at..end))
        .ok_or_else(|| format!("truncated in its {what}"))?;
    Ok(field
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn zstd(stored: &[u8], raw_len: u64) -> Result<(), String> {
    if stored.get(..4) != Some(&ZSTD_MAGIC[..]) {
        return Err("not a zstd frame (bad magic)".into());
    }
    let descriptor = le(stored, 4, 1, "frame header")?;
    let single_segment = descriptor & 0x20 != 0;
    if descriptor & 0x08 != 0 {
        return Err("reserved frame header bit set".into());
    }
    let mut pos = 5;
    let mut window = 0;
    if !single_segment {
        let wd = le(stored, pos, 1, "window descriptor")?;
        let base = 1u64 << (10 + (wd >> 3));
        window = base + base / 8 * (wd & 7);
        if window > ZSTD_WINDOW_MAX {
            return Err(format!(
                "window of {window} bytes is larger than zstd allows"
            ));
        }
        pos += 1;
    }
    pos += [0, 1, 2, 4][(descriptor & 3) as usize]; // dictionary id
    let fcs_len = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    if fcs_len > 0 {
        let mut content = le(stored, pos, fcs_len, "content size")?;
        if fcs_len == 2 {
            content += 256;
        }
        if content != raw_len {
            return Err(format!(
                "frame says it decodes to {content} bytes, its record {raw_len}"
            ));
        }
        if single_segment {
            window = content;
        }
        pos += fcs_len;
    }
    let block_max = ZSTD_BLOCK_MAX.min(window.max(1));
    // Raw and RLE blocks say exactly what they decode to; compressed ones at most a block.
    let (mut least, mut most) = (0u64, 0u64);
    loop {
        let header = le(stored, pos, 3, "block header")?;
        pos += 3;
        let size = header >> 3;
        let stored_size = match (header >> 1) & 3 {
            0 => size,
            1 => 1,
            2 => size,
            _ => return Err("reserved block type".into()),
        };
        if size > block_max {
            return Err(format!("block of {size} bytes, more than {block_max}"));
        }
        if (header >> 1) & 3 == 2 {
            most += block_max;
        } else {
            least += size;
            most += size;
        }
        pos = pos
            .checked_add(stored_size as usize)
            .filter(|&end| end <= stored.len())
            .ok_or("truncated in a block")?;
        if header & 1 != 0 {
            break;
        }
    }
    if descriptor & 0x04 != 0 {
        pos += 4; // content checksum
    }
    if pos > stored.len() {
        return Err("truncated in its checksum".into());
    }
    if pos < stored.len() {
        return Err(format!("{} bytes after the frame", stored.len() - pos));
    }
    if raw_len < least || raw_len > most {
        return Err(format!(
            "blocks decode to {least}..={most} bytes, its record says {raw_len}"
        ));
    }
    Ok(())
}

/// An lz4 length: the 4-bit `nibble`, then bytes of 255 while they last.
fn lz4_length(stored: &[u8], pos: &mut usize, nibble: u64) -> Result<u64, String> {
    let mut len = nibble;
    if nibble == 15 {
        loop {
            let byte = *stored.get(*pos).ok_or("truncated in a length")?;
            *pos += 1;
            len += u64::from(byte);
            if byte != 255 {
                break;
            }
        }
    }
    Ok(len)
}

fn lz4(stored: &[u8], raw_len: u64) -> Result<(), String> {
    let (mut pos, mut out) = (0usize, 0u64);
    loop {
        let token = *stored.get(pos).ok_or("truncated before a sequence")?;
        pos += 1;
        let literals = lz4_length(stored, &mut pos, u64::from(token >> 4))?;
        pos = usize::try_from(literals)
            .ok()
            .and_then(|n| pos.checked_add(n))
            .filter(|&end| end <= stored.len())
            .ok_or("truncated in literals")?;
        out += literals;
        if pos == stored.len() {
            break; // the last sequence has literals only
        }
        let offset = le(stored, pos, 2, "match offset")?;
        pos += 2;
        if offset == 0 || offset > out {
            return Err(format!(
                "match offset {offset} before the start of the output"
            ));
        }
        out += lz4_length(stored, &mut pos, u64::from(token & 15))? + 4;
        if out > raw_len {
            break;
        }
    }
    if out != raw_len {
        return Err(format!(
            "block decodes to {}{out} bytes, its record says {raw_len}",
            if out > raw_len { "more than " } else { "" }
        ));
    }
    Ok(())
}

fn zlib(stored: &[u8]) -> Result<(), String> {
    let (cmf, flg) = match stored {
        [cmf, flg, _, _, _, _, ..] => (u16::from(*cmf), u16::from(*flg)),
        _ => return Err("too short for a zlib stream".into()),
    };
    if cmf & 0x0f != 8 || cmf >> 4 > 7 || (cmf << 8 | flg) % 31 != 0 {
        return Err("not a zlib stream (bad header)".into());
    }
    if flg & 0x20 != 0 {
        return Err("zlib stream asks for a preset dictionary".into());
    }
    Ok(())
}

fn gzip(stored: &[u8], raw_len: u64) -> Result<(), String> {
    if stored.len() < 18 || stored[..3] != [0x1f, 0x8b, 8] || stored[3] & 0xe0 != 0 {
        return Err("not a gzip member (bad header)".into());
    }
    // ISIZE: the output's length modulo 2^32 (chunks are far smaller).
    let size = le(stored, stored.len() - 4, 4, "trailer")?;
    if size != raw_len & 0xffff_ffff {
        return Err(format!(
            "member says it decodes to {size} bytes, its record {raw_len}"
        ));
    }
    Ok(())
}
