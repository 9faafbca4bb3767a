//! Frames exchanged between the supervisor and its workers over a Unix socket.
//!
//! ```text
//! header := MAGIC:u16 kind:u8 reserved:u8 n_fds:u16 n_shared:u16 tag:u64 len:u64   (24 bytes)
//! body   := len bytes (a pickle stream); n_fds memfd descriptors ride along (SCM_RIGHTS)
//! ```
//!
//! The descriptors carry the out-of-band buffers of the pickle stream, in order; the
//! last `n_shared` of them are shared segments (`oxjob.shared` arrays), which the
//! receiver maps shared and writable instead of with its own mapping mode.

use crate::error::{Error, Result};

/// Bytes of a header.
pub const HEADER_LEN: usize = 24;
/// Largest body accepted (large data travels in memfds, not in bodies).
pub const MAX_BODY: u64 = 1 << 36;
/// Most descriptors one frame may carry.
pub const MAX_FDS: u16 = 250;
const MAGIC: u16 = 0x0B5A;

/// What a frame means; the numbers are the byte on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Supervisor → worker: a function (pickled), `tag` is its id for this call.
    Function = 1,
    /// Supervisor → worker: a batch of calls, `tag` is the batch id.
    Batch = 2,
    /// Worker → supervisor: the batch's results, `tag` is the batch id.
    Result = 3,
    /// Worker → supervisor: the batch raised; body is the pickled exception.
    Error = 4,
    /// Supervisor → worker: the call is over, forget its functions.
    EndCall = 5,
    /// Supervisor → worker: exit now.
    Shutdown = 6,
    /// Worker → supervisor: started and ready (body: nothing).
    Ready = 7,
    /// Supervisor → worker: configuration pickled once at start.
    Init = 8,
    /// Worker → supervisor, before a batch's `Result`: the batch's input segments
    /// are no longer mapped by the worker, so the supervisor may refill them.
    Released = 9,
    /// Supervisor → worker: memfds (all sent as shared) the caller is done with; the
    /// worker may refill one with a result of exactly its size instead of a new one.
    Spares = 10,
    /// Supervisor → worker, before a batch: shared segments the caller has dropped
    /// (body: their keys, see [`super::dropped`]), which the worker must stop
    /// keeping mapped; `tag` 1 means all of them.
    Forget = 11,
}

impl Kind {
    /// The kind whose wire value is `byte`.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Function,
            2 => Kind::Batch,
            3 => Kind::Result,
            4 => Kind::Error,
            5 => Kind::EndCall,
            6 => Kind::Shutdown,
            7 => Kind::Ready,
            8 => Kind::Init,
            9 => Kind::Released,
            10 => Kind::Spares,
            11 => Kind::Forget,
            _ => return None,
        })
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Meaning.
    pub kind: Kind,
    /// Batch or function id.
    pub tag: u64,
    /// Body length.
    pub len: u64,
    /// Number of descriptors that come with the frame.
    pub n_fds: u16,
    /// How many of them (the last ones) are shared segments.
    pub n_shared: u16,
}

impl Header {
    /// Encode.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        out[2] = self.kind as u8;
        out[4..6].copy_from_slice(&self.n_fds.to_le_bytes());
        out[6..8].copy_from_slice(&self.n_shared.to_le_bytes());
        out[8..16].copy_from_slice(&self.tag.to_le_bytes());
        out[16..24].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Decode and check a header.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header> {
        let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(Error::corrupt(format!("bad frame magic {magic:#06x}")));
        }
        let kind = Kind::from_byte(bytes[2])
            .ok_or_else(|| Error::corrupt(format!("unknown frame kind {}", bytes[2])))?;
        if bytes[3] != 0 {
            return Err(Error::corrupt("reserved frame byte is not zero"));
        }
        let n_fds = u16::from_le_bytes([bytes[4], bytes[5]]);
        if n_fds > MAX_FDS {
            return Err(Error::corrupt(format!("{n_fds} descriptors in one frame")));
        }
        let n_shared = u16::from_le_bytes([bytes[6], bytes[7]]);
        if n_shared > n_fds {
            return Err(Error::corrupt(format!(
                "{n_shared} shared segments among {n_fds} descriptors"
            )));
        }
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&bytes[8..16]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[16..24]);
        let len = u64::from_le_bytes(len);
        if len > MAX_BODY {
            return Err(Error::corrupt(format!("frame body of {len} bytes")));
        }
        Ok(Header {
            kind,
            tag: u64::from_le_bytes(tag),
            len,
            n_fds,
            n_shared,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let header = Header {
            kind: Kind::Batch,
            tag: 42,
            len: 1000,
            n_fds: 3,
            n_shared: 1,
        };
        assert_eq!(Header::decode(&header.encode()).ok(), Some(header));
        let mut bad = header.encode();
        bad[2] = 99;
        assert!(Header::decode(&bad).is_err());
        let mut bad = header.encode();
        bad[0] = 0;
        assert!(Header::decode(&bad).is_err());
        let huge = Header {
            len: MAX_BODY + 1,
            ..header
        };
        assert!(Header::decode(&huge.encode()).is_err());
        let too_shared = Header {
            n_shared: 4,
            ..header
        };
        assert!(Header::decode(&too_shared.encode()).is_err());
    }
}
