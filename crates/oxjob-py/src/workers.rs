//! The worker processes (`oxjob_core::workers`) as Python classes: `Supervisor` on
//! the caller's side (the core's `Supervisor`, which starts, feeds and reaps them),
//! `WorkerChannel` inside a worker.

use crate::buffer::{Borrowed, OwnedBuffer};
use crate::errors::os_error;
use crate::kept::KeptSegments;
use crate::segment::Segment;
use oxjob_core::workers::channel::{self, Frame, Progress};
use oxjob_core::workers::dropped;
use oxjob_core::workers::frame::{Header, Kind};
use oxjob_core::workers::memfd::{MapMode, Mapping};
use oxjob_core::workers::sibling::Sibling;
use oxjob_core::workers::{self, Event, Events, Waited, WorkerSpec};
use pyo3::exceptions::{PyEOFError, PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Waits are cut into slices this long so that Ctrl-C is seen promptly.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

fn kind_from(byte: u8) -> PyResult<Kind> {
    Kind::from_byte(byte).ok_or_else(|| PyValueError::new_err(format!("unknown frame kind {byte}")))
}

fn map_mode(name: &str) -> PyResult<MapMode> {
    match name {
        "r" => Ok(MapMode::ReadOnly),
        "c" => Ok(MapMode::CopyOnWrite),
        "shared" | "r+" | "w+" => Ok(MapMode::Shared),
        other => Err(PyValueError::new_err(format!(
            "mmap_mode must be 'r', 'c', 'r+' or 'w+', got {other:?}"
        ))),
    }
}

/// Tag a frame's failure with where it came from (`worker`, `generation`, `kind`,
/// `tag` attributes), so that a dispatcher can fail the one batch it belongs to.
fn from_frame(
    py: Python<'_>,
    err: PyErr,
    worker: Option<usize>,
    generation: Option<u64>,
    kind: u8,
    tag: u64,
) -> PyErr {
    let value = err.value(py);
    // Best effort: an exception that takes no attributes is raised as it is.
    let _ = value.setattr("worker", worker);
    let _ = value.setattr("generation", generation);
    let _ = value.setattr("kind", kind);
    let _ = value.setattr("tag", tag);
    err
}

/// A frame that was skipped because its body's memory could not be had.
fn dropped_error(header: &Header, from: &str, reason: &str) -> PyErr {
    PyMemoryError::new_err(format!(
        "a {:?} frame of {} bytes from {from} could not be received: {reason}",
        header.kind, header.len
    ))
}

fn segment_fds<'a>(segments: &'a [PyRef<'a, Segment>]) -> Vec<BorrowedFd<'a>> {
    segments.iter().map(|s| s.fd()).collect()
}

type FrameParts<'py> = (
    u8,
    u64,
    Bound<'py, OwnedBuffer>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
);

/// Regular buffers are mapped with `mode`; the last `n_shared` descriptors are
/// shared segments and stay `Segment`s (mapped shared, writable). In a worker (no
/// `origin`), inputs are mapped with all their pages, and with `kept` (a batch's
/// inputs) their read-only or copy-on-write views are kept across batches. In the
/// caller, results from worker `origin` keep their memfd, which becomes a spare when
/// the result is garbage-collected.
fn frame_parts<'py>(
    py: Python<'py>,
    frame: Frame,
    mode: MapMode,
    origin: Option<usize>,
    kept: Option<&KeptSegments>,
) -> PyResult<FrameParts<'py>> {
    let in_worker = origin.is_none();
    let n_regular = frame.fds.len() - frame.header.n_shared as usize;
    let mut fds = frame.fds;
    let shared_fds = fds.split_off(n_regular);
    let keep_views = in_worker && mode != MapMode::Shared;
    let buffers = py
        .detach(|| {
            fds.into_iter()
                .map(|fd| {
                    if let (true, Some(kept)) = (keep_views, kept) {
                        let view = kept.view(&fd, mode).map_err(|err| map_failed(&fd, err))?;
                        return Ok(OwnedBuffer::kept(view));
                    }
                    let mapping = Mapping::new(&fd, mode).map_err(|err| map_failed(&fd, err))?;
                    if in_worker {
                        mapping.populate_read();
                    }
                    Ok(match origin {
                        Some(worker) => OwnedBuffer::result(mapping, fd, worker),
                        None => OwnedBuffer::mapped(mapping),
                    })
                })
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(os_error)?;
    let regular = buffers
        .into_iter()
        .map(|buffer| Bound::new(py, buffer))
        .collect::<PyResult<Vec<_>>>()?;
    let shared = shared_fds
        .into_iter()
        .map(|fd| match kept {
            Some(kept) => kept.get_or_keep(py, fd),
            None => Bound::new(py, Segment::from_fd(fd)?),
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok((
        frame.header.kind as u8,
        frame.header.tag,
        Bound::new(py, OwnedBuffer::new(frame.body))?,
        PyList::new(py, regular)?,
        PyList::new(py, shared)?,
    ))
}

/// Name the size of a buffer that could not be mapped (the kind, ENOMEM above all, stays).
fn map_failed(fd: &OwnedFd, err: std::io::Error) -> std::io::Error {
    let len = fd
        .try_clone()
        .ok()
        .map(std::fs::File::from)
        .and_then(|file| file.metadata().ok())
        .map_or_else(|| "a buffer".to_string(), |m| format!("{} bytes", m.len()));
    std::io::Error::new(
        err.kind(),
        format!("cannot map {len} sent over a worker's socket: {err}"),
    )
}

/// The supervisor's guard, moved into `Python::detach` to finish a frame without the
/// GIL while no other frame can be sent. It must be dropped inside the closure: other
/// methods lock the supervisor with the GIL held, so a guard still held while waiting
/// for the GIL could deadlock with them.
struct HeldSupervisor<'a>(std::sync::MutexGuard<'a, workers::Supervisor>);

// SAFETY: `Python::detach` runs its closure synchronously on the calling thread, so
// the guard is used and dropped on the thread that locked the mutex; it holds no
// Python object.
unsafe impl Send for HeldSupervisor<'_> {}

// Wraps `oxjob_core::workers::Supervisor` (behind a lock) and its event queue.
/// Worker processes on the caller's side.
#[pyclass(module = "oxjob._engine", frozen)]
pub struct Supervisor {
    supervisor: Mutex<workers::Supervisor>,
    events: Events,
    map_mode: MapMode,
    /// The failure of an event met by `ready_events` after others it returned:
    /// raised by the next call, so that neither it nor they are lost.
    pending: Mutex<Option<PyErr>>,
}

impl Supervisor {
    fn pending_slot(&self) -> std::sync::MutexGuard<'_, Option<PyErr>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn raise_pending(&self) -> PyResult<()> {
        match self.pending_slot().take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, workers::Supervisor> {
        self.supervisor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `("frame", worker, generation, kind, tag, body, [buffers], [shared])` or
    /// `("exit", worker, generation, exit_code, signal)`.
    fn event_tuple<'py>(&self, py: Python<'py>, event: Event) -> PyResult<Bound<'py, PyTuple>> {
        let items: Vec<Bound<'py, PyAny>> = match event {
            Event::Frame {
                worker,
                generation,
                frame,
            } => {
                let (kind, tag) = (frame.header.kind as u8, frame.header.tag);
                // Results are left to fault in lazily: callers often keep them unread.
                let (kind, tag, body, buffers, shared) =
                    frame_parts(py, frame, self.map_mode, Some(worker), None).map_err(|err| {
                        from_frame(py, err, Some(worker), Some(generation), kind, tag)
                    })?;
                vec![
                    "frame".into_pyobject(py)?.into_any(),
                    worker.into_pyobject(py)?.into_any(),
                    generation.into_pyobject(py)?.into_any(),
                    kind.into_pyobject(py)?.into_any(),
                    tag.into_pyobject(py)?.into_any(),
                    body.into_any(),
                    buffers.into_any(),
                    shared.into_any(),
                ]
            }
            Event::Dropped {
                worker,
                generation,
                header,
                reason,
            } => {
                let err = dropped_error(&header, &format!("worker {worker}"), &reason);
                let (kind, tag) = (header.kind as u8, header.tag);
                return Err(from_frame(
                    py,
                    err,
                    Some(worker),
                    Some(generation),
                    kind,
                    tag,
                ));
            }
            Event::Exited {
                worker,
                generation,
                code,
                signal,
            } => vec![
                "exit".into_pyobject(py)?.into_any(),
                worker.into_pyobject(py)?.into_any(),
                generation.into_pyobject(py)?.into_any(),
                code.into_pyobject(py)?.into_any(),
                signal.into_pyobject(py)?.into_any(),
            ],
        };
        PyTuple::new(py, items)
    }
}

#[pymethods]
impl Supervisor {
    /// Start `n` workers running `program args...` with `env` added.
    #[new]
    #[pyo3(signature = (program, args, env, n, result_mode="shared", template=None))]
    fn new(
        py: Python<'_>,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        n: usize,
        result_mode: &str,
        template: Option<String>,
    ) -> PyResult<Self> {
        let spec = WorkerSpec {
            program,
            args,
            env,
            template,
        };
        let supervisor = py
            .detach(|| workers::Supervisor::new(spec, n))
            .map_err(os_error)?;
        Ok(Supervisor {
            events: supervisor.events(),
            supervisor: Mutex::new(supervisor),
            map_mode: map_mode(result_mode)?,
            pending: Mutex::new(None),
        })
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().len())
    }

    /// Send a frame with `segments` as descriptors; the last `n_shared` are shared.
    #[pyo3(signature = (worker, kind, tag, body, segments, n_shared=0))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        worker: usize,
        kind: u8,
        tag: u64,
        body: &Bound<'_, PyAny>,
        segments: Vec<PyRef<'_, Segment>>,
        n_shared: u16,
    ) -> PyResult<()> {
        let kind = kind_from(kind)?;
        let body = Borrowed::new(body)?;
        let bytes = body.as_slice();
        let fds = segment_fds(&segments);
        if matches!(kind, Kind::Batch | Kind::Init) {
            // Workers may keep any input mapped (see `kept`): its drop is logged.
            for segment in &segments {
                segment.mark_sent_to_worker();
            }
        }
        // A frame the socket takes at once goes with the interpreter's lock held:
        // letting go of it for the few microseconds of a sendmsg hands it to the
        // dispatcher thread and back, which cost more than the send itself (a fifth
        // of `Pool.imap` over tiny tasks). Only a worker that is behind is waited for
        // without it.
        if let Ok(supervisor) = self.supervisor.try_lock() {
            match supervisor
                .try_send(worker, kind, tag, bytes, &fds, n_shared)
                .map_err(os_error)?
            {
                Progress::Sent => return Ok(()),
                Progress::Nothing => {}
                Progress::Part(sent) => {
                    // Still holding the supervisor: no other frame can come between.
                    let held = HeldSupervisor(supervisor);
                    let n_fds = fds.len();
                    return py
                        .detach(move || {
                            let held = held; // the whole guard moves in, and drops here
                            held.0
                                .finish_send(worker, kind, tag, bytes, n_fds, n_shared, sent)
                        })
                        .map_err(os_error);
                }
            }
        }
        py.detach(|| self.lock().send(worker, kind, tag, bytes, &fds, n_shared))
            .map_err(os_error)
    }

    /// Up to `limit` events that are already waiting (none: an empty list), in the
    /// form of `next_event`'s; handling a burst at once saves a wake-up per event.
    ///
    /// An event that cannot be turned into Python objects (a result too large for
    /// memory: `MemoryError`, with `worker`, `generation`, `kind` and `tag` attributes
    /// naming its frame) is raised, here or, after events already taken, by the next
    /// call of this method or of `next_event`.
    fn ready_events<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Bound<'py, PyList>> {
        self.raise_pending()?;
        let mut events = Vec::new();
        while events.len() < limit {
            let Some(event) = self.events.try_next() else {
                break;
            };
            match self.event_tuple(py, event) {
                Ok(event) => events.push(event),
                Err(err) if events.is_empty() => return Err(err),
                Err(err) => {
                    *self.pending_slot() = Some(err);
                    break;
                }
            }
        }
        PyList::new(py, events)
    }

    /// The next event, or None after `timeout` seconds (None: wait for ever) or
    /// when `wake` was called.
    ///
    /// `("frame", worker, generation, kind, tag, body, [buffers], [shared segments])` or
    /// `("exit", worker, generation, exit_code, signal)`; raises as `ready_events` does.
    #[pyo3(signature = (timeout=None))]
    fn next_event<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.raise_pending()?;
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            let slice = match deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(SIGNAL_CHECK),
                None => SIGNAL_CHECK,
            };
            // Wait on the event handle, not the supervisor: other threads can send meanwhile.
            match py.detach(|| self.events.wait(slice)) {
                Waited::Event(event) => return self.event_tuple(py, event).map(Some),
                Waited::Woken => return Ok(None),
                Waited::TimedOut => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// End a `next_event` wait now (it returns None), or the next one if none is
    /// under way: the thread that waits is told to look at its own state (a pool
    /// closing) without waiting for its timeout.
    fn wake(&self) {
        self.events.wake();
    }

    /// SIGKILL a worker; its exit arrives as an event.
    fn kill(&self, py: Python<'_>, worker: usize) {
        // Without the GIL: a send waiting for a busy worker holds the supervisor.
        py.detach(|| self.lock().kill(worker));
    }

    /// (Re)start the worker in a slot; returns its new generation.
    fn spawn(&self, py: Python<'_>, worker: usize) -> PyResult<u64> {
        py.detach(|| self.lock().spawn(worker)).map_err(os_error)
    }

    /// Process id of a worker.
    fn pid(&self, py: Python<'_>, worker: usize) -> Option<i32> {
        py.detach(|| self.lock().pid(worker))
    }

    /// Generation of a worker slot.
    fn generation(&self, py: Python<'_>, worker: usize) -> Option<u64> {
        py.detach(|| self.lock().generation(worker))
    }

    /// Ask workers to exit, wait up to `grace` seconds, kill the rest.
    #[pyo3(signature = (grace=1.0))]
    fn shutdown(&self, py: Python<'_>, grace: f64) {
        py.detach(|| {
            self.lock()
                .shutdown(Duration::from_secs_f64(grace.max(0.0)))
        });
    }
}

/// A worker's end of its socket (descriptor 3).
#[pyclass(module = "oxjob._engine", frozen)]
pub struct WorkerChannel {
    sock: UnixStream,
    map_mode: MapMode,
    kept: KeptSegments,
}

#[pymethods]
impl WorkerChannel {
    /// Take over descriptor `fd`; received buffers are mapped with `map_mode`.
    #[new]
    #[pyo3(signature = (fd, map_mode="c"))]
    fn new(fd: i32, map_mode: &str) -> PyResult<Self> {
        let mode = self::map_mode(map_mode)?;
        // SAFETY: the supervisor handed this descriptor to the worker; taking
        // ownership here is the only use of it.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        Ok(WorkerChannel {
            sock,
            map_mode: mode,
            kept: KeptSegments::default(),
        })
    }

    /// `(kind, tag, body, [buffers], [shared segments])`, or None after `timeout` seconds; EOFError
    /// when the supervisor closed the socket. A frame too large for this process's
    /// memory raises `MemoryError` (with `kind` and `tag` attributes); the channel
    /// stays usable.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let timeout = timeout.map(|t| Duration::from_secs_f64(t.max(0.001)));
        self.sock.set_read_timeout(timeout).map_err(os_error)?;
        let mut frame = py.detach(|| channel::recv(&self.sock));
        while let Ok(Some(Frame { header, body, .. })) = &frame {
            if header.kind != Kind::Forget {
                break;
            }
            self.kept.forget(body, header.tag == 1)?;
            frame = py.detach(|| channel::recv(&self.sock));
        }
        match frame {
            Ok(Some(frame)) => {
                // Shared segments of tasks, and views of their inputs, are
                // kept mapped (until forgotten).
                // Spare result segments too: one coming back is the one mapped before.
                let kept = matches!(frame.header.kind, Kind::Batch | Kind::Init | Kind::Spares)
                    .then_some(&self.kept);
                // Task inputs are read whole, as a rule: map their pages in bulk.
                let (kind, tag) = (frame.header.kind as u8, frame.header.tag);
                let (kind, tag, body, buffers, shared) =
                    frame_parts(py, frame, self.map_mode, None, kept)
                        .map_err(|err| from_frame(py, err, None, None, kind, tag))?;
                let items: Vec<Bound<'py, PyAny>> = vec![
                    kind.into_pyobject(py)?.into_any(),
                    tag.into_pyobject(py)?.into_any(),
                    body.into_any(),
                    buffers.into_any(),
                    shared.into_any(),
                ];
                Ok(Some(PyTuple::new(py, items)?))
            }
            Ok(None) => Err(PyEOFError::new_err("the supervisor closed the channel")),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(err) => match channel::dropped(&err) {
                // The stream is still in step: the worker may report the batch failed.
                Some(lost) => {
                    let (kind, tag) = (lost.header.kind as u8, lost.header.tag);
                    let err = dropped_error(&lost.header, "the caller", &lost.reason);
                    Err(from_frame(py, err, None, None, kind, tag))
                }
                None => Err(os_error(err)),
            },
        }
    }

    /// Whether shared segments (or views of inputs) are kept mapped.
    fn keeps_segments(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Stop keeping `segments` mapped (spares the worker lets go of).
    fn forget_segments(&self, segments: Vec<PyRef<'_, Segment>>) -> PyResult<()> {
        let keys = segments
            .iter()
            .map(|segment| dropped::key_of(segment.fd()))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(os_error)?;
        self.kept.forget_keys(&keys, false);
        Ok(())
    }

    /// Stop keeping shared segments mapped (the worker is idle).
    fn let_go_of_segments(&self) {
        self.kept.forget_keys(&[], true);
    }

    /// Send a frame with `segments` as descriptors; the last `n_shared` are shared.
    #[pyo3(signature = (kind, tag, body, segments, n_shared=0))]
    fn send(
        &self,
        py: Python<'_>,
        kind: u8,
        tag: u64,
        body: &Bound<'_, PyAny>,
        segments: Vec<PyRef<'_, Segment>>,
        n_shared: u16,
    ) -> PyResult<()> {
        let kind = kind_from(kind)?;
        let body = Borrowed::new(body)?;
        let bytes = body.as_slice();
        let fds = segment_fds(&segments);
        py.detach(|| channel::send(&self.sock, kind, tag, bytes, &fds, n_shared))
            .map_err(os_error)
    }
}

/// In the template: fork a worker as a child of the template's parent (the caller),
/// with `os.fork()`'s Python hooks around `oxjob_core::workers::sibling`. Returns 0 in
/// the child and its pid here; OSError where it cannot be done (another thread, not
/// glibc, `clone3` refused).
#[pyfunction]
pub fn fork_sibling() -> PyResult<i32> {
    let sibling = Sibling::prepare().map_err(os_error)?;
    // SAFETY: with the GIL held (a #[pyfunction]), as os.fork() calls it.
    unsafe { pyo3::ffi::PyOS_BeforeFork() };
    // SAFETY: prepare() found this process single-threaded and nothing ran since but
    // Python's fork hooks, which start no thread.
    let forked = unsafe { sibling.fork() };
    match forked {
        // SAFETY: in the child, at once, as os.fork() does.
        Ok(0) => unsafe { pyo3::ffi::PyOS_AfterFork_Child() },
        // SAFETY: in the parent (or after a failed fork), as os.fork() does.
        _ => unsafe { pyo3::ffi::PyOS_AfterFork_Parent() },
    }
    forked.map_err(os_error)
}

/// In a worker: exit as soon as the parent process `ppid` is gone.
#[pyfunction]
pub fn watch_parent(ppid: i32) -> PyResult<()> {
    oxjob_core::workers::watch_parent(ppid).map_err(os_error)
}
