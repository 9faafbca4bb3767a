//! What a worker keeps mapped between batches and calls, by memfd key: a segment
//! mapped anew costs its page faults again (a 100 MB array: ~12 ms to map and sum on
//! the project's VM, ~3.5 ms once mapped). The caller logs the drop of every segment
//! a worker may keep, and the worker forgets it at its next frame (see
//! `oxjob_core::workers::dropped`); an idle worker lets go of everything.
//!
//! Two kinds are kept: shared segments (`oxjob.shared` arrays, kept as `Segment`s
//! with their descriptor) and, when inputs are mapped read-only or copy-on-write
//! (`mmap_mode='r'` or `'c'`), the mappings of regular input segments. A view shows
//! the memfd's current bytes wherever it was not written (read-only views never
//! are), so a caller that refills a segment (it does so only once no buffer of the
//! worker's holds it) is seen as it is; see `KeptSegments::view` for when a
//! copy-on-write view may be reused.

use crate::errors::os_error;
use crate::segment::Segment;
use oxjob_core::workers::dropped;
use oxjob_core::workers::memfd::{MapMode, Mapping};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most shared segments a worker keeps mapped (each holds a descriptor, and `ulimit -n`
/// is often 1024), and most kept views of inputs; beyond, it lets go of all of them.
const MAX_KEPT: usize = 256;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Insert `value` under `key`; when `map` is full, the old entries are returned (to be
/// dropped by the caller outside the lock).
fn insert_bounded<V>(map: &mut HashMap<dropped::Key, V>, key: dropped::Key, value: V) -> Vec<V> {
    let evicted = if map.len() >= MAX_KEPT {
        map.drain().map(|(_, v)| v).collect()
    } else {
        Vec::new()
    };
    map.insert(key, value);
    evicted
}

#[derive(Default)]
pub struct KeptSegments {
    segments: Mutex<HashMap<dropped::Key, Py<Segment>>>,
    views: Mutex<HashMap<dropped::Key, Arc<Mapping>>>,
}

impl KeptSegments {
    /// Whether anything is kept.
    pub fn is_empty(&self) -> bool {
        locked(&self.segments).is_empty() && locked(&self.views).is_empty()
    }

    /// The kept segment of the memfd `fd`, or a new one, kept from now on.
    pub fn get_or_keep<'py>(&self, py: Python<'py>, fd: OwnedFd) -> PyResult<Bound<'py, Segment>> {
        let key = dropped::key_of(fd.as_fd()).map_err(os_error)?;
        let mut kept = locked(&self.segments);
        if let Some(known) = kept.get(&key) {
            return Ok(known.bind(py).clone());
        }
        let segment = Bound::new(py, Segment::from_fd(fd)?)?;
        let evicted = insert_bounded(&mut kept, key, segment.clone().unbind());
        drop(kept);
        drop(evicted); // outside the lock, as in `forget`
        Ok(segment)
    }

    /// A view of all of `fd` mapped with `mode` (read-only or copy-on-write): the
    /// kept one when it still shows exactly the memfd's bytes, else a new one, kept
    /// from now on. A new view has every page mapped now (cheaper than a fault per
    /// page later).
    ///
    /// A read-only view always shows the memfd's bytes. A copy-on-write view is
    /// reused only when no buffer of an earlier batch still holds it (whose writes
    /// would show through) and none of its pages was written.
    pub fn view(&self, fd: &OwnedFd, mode: MapMode) -> std::io::Result<Arc<Mapping>> {
        let key = dropped::key_of(fd.as_fd())?;
        let len = std::fs::File::from(fd.try_clone()?).metadata()?.len();
        let known = locked(&self.views).get(&key).cloned();
        if let Some(known) = known {
            let intact = mode == MapMode::ReadOnly
                || (Arc::strong_count(&known) == 2 && !known.has_private_pages().unwrap_or(true));
            if known.len() as u64 == len && intact {
                return Ok(known);
            }
        }
        let view = match Mapping::new(fd, mode) {
            Ok(view) => view,
            // Out of address space (a worker under RLIMIT_AS): kept views must not be
            // what makes a batch fail, so let go of them and try once more.
            Err(err) if err.kind() == std::io::ErrorKind::OutOfMemory => {
                let released: Vec<Arc<Mapping>> =
                    locked(&self.views).drain().map(|(_, v)| v).collect();
                drop(released);
                Mapping::new(fd, mode)?
            }
            Err(err) => return Err(err),
        };
        let view = Arc::new(view);
        view.populate_read();
        let replaced = {
            let mut views = locked(&self.views);
            let old = views.remove(&key);
            (old, insert_bounded(&mut views, key, Arc::clone(&view)))
        };
        drop(replaced);
        Ok(view)
    }

    /// Let go of the keys in `body` (a `Forget` frame's), or of everything.
    pub fn forget(&self, body: &[u8], all: bool) -> PyResult<()> {
        let keys = dropped::decode(body).map_err(|err| PyValueError::new_err(err.to_string()))?;
        self.forget_keys(&keys, all);
        Ok(())
    }

    /// Let go of `keys`, or of everything.
    pub fn forget_keys(&self, keys: &[dropped::Key], all: bool) {
        // Dropped outside the lock: a segment's release may run Python code.
        let (segments, views): (Vec<Py<Segment>>, Vec<Arc<Mapping>>) = {
            let mut segments = locked(&self.segments);
            let mut views = locked(&self.views);
            if all {
                (
                    segments.drain().map(|(_, s)| s).collect(),
                    views.drain().map(|(_, v)| v).collect(),
                )
            } else {
                (
                    keys.iter().filter_map(|key| segments.remove(key)).collect(),
                    keys.iter().filter_map(|key| views.remove(key)).collect(),
                )
            }
        };
        drop(segments);
        drop(views);
    }
}
