//! The pure-Rust core of oxjob.
//!
//! This crate knows nothing of Python: the binding crate (`oxjob-py`) converts
//! Python objects into the slices and options used here.
//!
//! * [`buffer`]: zeroed output buffers, on huge pages when large.
//! * [`codec`]: the chunk codecs (zstd, lz4, zlib, gzip) and their names.
//! * [`container`]: the file format shared by `dump`/`load` and the cache.
//! * [`hash`]: the streaming xxh3-128 hasher behind `oxjob.hash`.
//! * [`store`]: the on-disk cache store behind `oxjob.Memory`.
//! * [`tempname`]: temporary files beside their targets, under names nobody can plant.
//! * [`work_queue`]: the small scoped-thread work queue that compresses, decompresses
//!   and checksums a container's chunks, and copies large buffers into memfds, on
//!   several cores.
//! * [`workers`]: the worker processes behind `Parallel` and `Pool`: the
//!   [`workers::Supervisor`] that starts, feeds and reaps them, the frames and memfds
//!   that carry work to them, the channel a worker talks through.

pub mod buffer;
pub mod codec;
pub mod container;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod hash;
pub mod store;
pub mod tempname;
pub mod work_queue;
pub mod workers;

pub use error::{Error, Result};
