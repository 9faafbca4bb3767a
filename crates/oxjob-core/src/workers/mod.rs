//! The worker processes behind `oxjob.Parallel` and `oxjob.Pool`, and their
//! [`Supervisor`]: one Unix socket each, frames with memfd descriptors, crash
//! detection.
//!
//! * Workers are forks of a warm template process ([`template`], [`sibling`],
//!   [`standby`]) or, where none can serve, fresh interpreters started with
//!   [`std::process::Command`] (fork+exec); never a bare fork of the caller. Either
//!   way they are the caller's children, in their own process group so that a
//!   terminal's Ctrl-C reaches only the caller, which then cancels. Their socket is
//!   descriptor 3.
//! * One reader thread per worker turns incoming frames into [`Event`]s (`events.rs`);
//!   when the socket closes it reaps the worker (`waitpid`) and reports how it ended.
//! * Signals go through a pidfd, so a reaped pid that the kernel reuses is never hit.
//! * Workers watch their parent themselves (see [`watch_parent`]) and exit when it dies.

pub mod channel;
pub mod dropped;
mod events;
pub mod fork_lock;
pub mod frame;
pub mod memfd;
mod process;
pub mod sibling;
pub mod spares;
pub mod standby;
pub mod template;

use events::{events_channel, Signal};
pub use events::{Event, Events, Waited};
pub use process::watch_parent;
use process::{pidfd_open, reap, wait_readable};

use channel::Progress;
use frame::Kind;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Spare result segments handed to a worker with each batch.
const SPARES_PER_BATCH: usize = 2;

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// The interpreter.
    pub program: String,
    /// Its arguments (e.g. `-m oxjob._workers.worker`).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The socket of a template process to fork workers from (see [`template`]);
    /// workers are fork+exec'd when it is None or cannot serve.
    pub template: Option<String>,
}

struct Slot {
    generation: u64,
    pid: i32,
    pidfd: Option<OwnedFd>,
    sock: Arc<UnixStream>,
    reader: Option<JoinHandle<()>>,
    /// Position in the log of dropped shared segments up to which the worker was told.
    told: AtomicU64,
}

/// A set of worker processes.
pub struct Supervisor {
    spec: WorkerSpec,
    slots: Vec<Option<Slot>>,
    tx: Sender<Signal>,
    events: Events,
    next_generation: u64,
    /// The process that started the workers. A child made by a bare `fork()` holds a
    /// copy of this supervisor whose threads do not exist in it and whose workers are
    /// its parent's: it must neither use nor stop them.
    owner: u32,
    /// Whether any worker came from the template: then, shut down, the supervisor has
    /// as many forked for the next pool like it (see [`standby`]).
    from_template: bool,
}

impl Supervisor {
    /// Start `n` workers.
    pub fn new(spec: WorkerSpec, n: usize) -> io::Result<Supervisor> {
        let (tx, events) = events_channel();
        let mut supervisor = Supervisor {
            spec,
            slots: (0..n).map(|_| None).collect(),
            tx,
            events,
            next_generation: 0,
            owner: std::process::id(),
            from_template: false,
        };
        let workers: Vec<usize> = (0..n).collect();
        for chunk in workers.chunks(template::MAX_PER_REQUEST) {
            supervisor.spawn_all(chunk)?;
        }
        Ok(supervisor)
    }

    /// Number of worker slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn check_owner(&self) -> io::Result<()> {
        if std::process::id() == self.owner {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "these workers belong to process {} (this process was forked from it)",
            self.owner
        )))
    }

    /// Start (or restart) the worker in slot `worker`; returns its generation.
    pub fn spawn(&mut self, worker: usize) -> io::Result<u64> {
        let generations = self.spawn_all(&[worker])?;
        generations
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("no worker was started"))
    }

    /// Start (or restart) the workers in these slots together (a template forks them
    /// in one request); returns their generations, in order.
    pub fn spawn_all(&mut self, workers: &[usize]) -> io::Result<Vec<u64>> {
        self.check_owner()?;
        for &worker in workers {
            if worker >= self.slots.len() {
                return Err(io::Error::other(format!("no worker slot {worker}")));
            }
            if let Some(old) = self.slots[worker].take() {
                kill_slot(&old);
                if let Some(reader) = old.reader {
                    let _ = reader.join();
                }
            }
        }
        let started = self.start_processes(workers.len())?;
        let mut generations = Vec::with_capacity(workers.len());
        for (&worker, (ours, pid)) in workers.iter().zip(started) {
            generations.push(self.install(worker, ours, pid)?);
        }
        Ok(generations)
    }

    /// `n` worker processes (our socket end and pid each): waiting ones made for a
    /// pool like this one, then forks of the template, then fork+exec'd ones.
    fn start_processes(&mut self, n: usize) -> io::Result<Vec<(UnixStream, i32)>> {
        let mut started = Vec::with_capacity(n);
        if let Some(path) = self.spec.template.as_deref() {
            let key = standby::Key::now(path, &self.spec.env).ok();
            if let Some(key) = &key {
                started.extend(standby::take(key, n).into_iter().map(|w| (w.sock, w.pid)));
                if !started.is_empty() {
                    // Pools like this one come one after the other: have the next one's
                    // workers forked while this one works, not after it closed.
                    standby::fill(key.clone(), n);
                }
            }
            let need = n - started.len();
            let body = match &key {
                Some(key) => Ok(key.request().to_vec()),
                None => template::request(&self.spec.env),
            };
            if let (true, Ok(body)) = (need > 0, body) {
                if let Ok(forked) = template::start(path, need, &body, [1, 2]) {
                    started.extend(forked.into_iter().map(|w| (w.sock, w.pid)));
                }
            }
            self.from_template |= !started.is_empty();
        }
        while started.len() < n {
            let (ours, theirs) = UnixStream::pair()?;
            let pid = self.exec_worker(&theirs)?;
            started.push((ours, pid));
        }
        Ok(started)
    }

    /// Start a fresh worker process (fork+exec) whose socket end is `theirs`.
    fn exec_worker(&self, theirs: &UnixStream) -> io::Result<i32> {
        let child_fd = theirs.as_raw_fd();
        let mut command = Command::new(&self.spec.program);
        command
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .process_group(0);
        // SAFETY: only async-signal-safe calls (dup2, fcntl) run between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if child_fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(child_fd, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // `child` is reaped by the reader thread; dropping the handle does not wait.
        Ok(command.spawn()?.id() as i32)
    }

    /// Watch the worker `pid` in slot `worker` (our socket end `ours`): its reader
    /// thread turns its frames and its exit into events. Returns its generation.
    fn install(&mut self, worker: usize, ours: UnixStream, pid: i32) -> io::Result<u64> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let sock = Arc::new(ours);
        let pidfd = pidfd_open(pid);
        let watch = pidfd.as_ref().and_then(|fd| fd.try_clone().ok());
        let reader_sock = Arc::clone(&sock);
        let tx = self.tx.clone();
        let reader = std::thread::Builder::new()
            .name(format!("oxjob-reader-{worker}"))
            .spawn(move || {
                // A worker's own children may inherit its socket and keep it open after
                // the worker died, so death is watched on the pidfd, not only as EOF.
                while wait_readable(&reader_sock, watch.as_ref()) {
                    match channel::recv(&reader_sock) {
                        Ok(Some(frame)) => {
                            let event = Event::Frame {
                                worker,
                                generation,
                                frame,
                            };
                            if tx.send(Signal::Event(event)).is_err() {
                                break;
                            }
                        }
                        // A frame too large for memory is skipped: the stream goes on.
                        Err(err) => {
                            let Some(lost) = channel::dropped(&err) else {
                                break;
                            };
                            let event = Event::Dropped {
                                worker,
                                generation,
                                header: lost.header,
                                reason: lost.reason.clone(),
                            };
                            if tx.send(Signal::Event(event)).is_err() {
                                break;
                            }
                        }
                        Ok(None) => break,
                    }
                }
                // Closing our end makes a still-running worker see EOF and exit.
                let _ = reader_sock.shutdown(std::net::Shutdown::Both);
                let (code, signal) = reap(pid);
                let _ = tx.send(Signal::Event(Event::Exited {
                    worker,
                    generation,
                    code,
                    signal,
                }));
            })?;
        self.slots[worker] = Some(Slot {
            generation,
            pid,
            pidfd,
            sock,
            reader: Some(reader),
            told: AtomicU64::new(dropped::end()),
        });
        Ok(generation)
    }

    /// Process id of the worker in slot `worker`.
    pub fn pid(&self, worker: usize) -> Option<i32> {
        self.slots.get(worker)?.as_ref().map(|s| s.pid)
    }

    /// Current generation of slot `worker`.
    pub fn generation(&self, worker: usize) -> Option<u64> {
        self.slots.get(worker)?.as_ref().map(|s| s.generation)
    }

    /// Send a frame to a worker.
    pub fn send(
        &self,
        worker: usize,
        kind: Kind,
        tag: u64,
        body: &[u8],
        fds: &[BorrowedFd<'_>],
        n_shared: u16,
    ) -> io::Result<()> {
        let slot = self.slot(worker)?;
        self.check_owner()?;
        if matches!(kind, Kind::Batch | Kind::Init) {
            // Before it maps this frame's shared segments: which it may stop keeping.
            let (news, now) = dropped::since(slot.told.load(Ordering::Relaxed));
            match news {
                dropped::News::All => channel::send(&slot.sock, Kind::Forget, 1, &[], &[], 0)?,
                dropped::News::Keys(keys) if !keys.is_empty() => {
                    let body = dropped::encode(&keys);
                    channel::send(&slot.sock, Kind::Forget, 0, &body, &[], 0)?;
                }
                dropped::News::Keys(_) => {}
            }
            slot.told.store(now, Ordering::Relaxed);
        }
        if kind == Kind::Batch {
            // A few result segments the caller is done with, for the worker to refill.
            let spare = spares::take(SPARES_PER_BATCH, worker);
            if !spare.is_empty() {
                // Another worker that filled one of them may keep it mapped: it lets go
                // (this one keeps it, and is not told).
                let keys: Vec<dropped::Key> = spare
                    .iter()
                    .filter_map(|fd| dropped::key_of(fd.as_fd()).ok())
                    .collect();
                let told = slot.told.load(Ordering::Relaxed);
                if let Some((before, after)) = dropped::record_all(&keys) {
                    if before == told {
                        slot.told.store(after, Ordering::Relaxed);
                    }
                }
                let spare_fds: Vec<BorrowedFd<'_>> = spare.iter().map(|fd| fd.as_fd()).collect();
                let count = spare_fds.len() as u16;
                channel::send(&slot.sock, Kind::Spares, 0, &[], &spare_fds, count)?;
            }
        }
        channel::send(&slot.sock, kind, tag, body, fds, n_shared)
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        self.events.next(timeout)
    }

    /// A handle on the events, to wait for them without holding the supervisor.
    pub fn events(&self) -> Events {
        self.events.clone()
    }

    /// Send a frame only as far as the worker's socket takes it at once (see
    /// [`channel::try_send`]); [`Progress::Part`] must be completed with
    /// [`Supervisor::finish_send`] before anything else goes to this worker.
    ///
    /// A frame that [`Supervisor::send`] would precede with others (segments to
    /// forget, spare result segments) is not attempted: `Nothing` (send it with
    /// `send`, which may wait).
    pub fn try_send(
        &self,
        worker: usize,
        kind: Kind,
        tag: u64,
        body: &[u8],
        fds: &[BorrowedFd<'_>],
        n_shared: u16,
    ) -> io::Result<Progress> {
        let slot = self.slot(worker)?;
        self.check_owner()?;
        let news = matches!(kind, Kind::Batch | Kind::Init)
            && dropped::end() != slot.told.load(Ordering::Relaxed);
        if news || (kind == Kind::Batch && spares::waiting()) {
            return Ok(Progress::Nothing);
        }
        channel::try_send(&slot.sock, kind, tag, body, fds, n_shared)
    }

    /// Send the rest of a frame [`Supervisor::try_send`] sent the first `sent` bytes of.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_send(
        &self,
        worker: usize,
        kind: Kind,
        tag: u64,
        body: &[u8],
        n_fds: usize,
        n_shared: u16,
        sent: usize,
    ) -> io::Result<()> {
        let slot = self.slot(worker)?;
        channel::finish(&slot.sock, kind, tag, body, n_fds, n_shared, sent)
    }

    fn slot(&self, worker: usize) -> io::Result<&Slot> {
        self.slots
            .get(worker)
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::other(format!("no worker {worker}")))
    }

    /// Kill the worker in slot `worker` (SIGKILL); its exit is reported as an event.
    pub fn kill(&self, worker: usize) {
        if self.check_owner().is_err() {
            return;
        }
        if let Some(slot) = self.slots.get(worker).and_then(Option::as_ref) {
            kill_slot(slot);
        }
    }

    /// Ask every worker to exit, wait up to `grace`, then kill the rest; joins everything.
    pub fn shutdown(&mut self, grace: Duration) {
        if self.check_owner().is_err() {
            for slot in self.slots.iter_mut().filter_map(Option::take) {
                // The reader threads exist only in the owner; their handles are
                // meaningless here. Closing our copies of the descriptors is harmless.
                std::mem::forget(slot.reader);
            }
            return;
        }
        if let (true, Some(path)) = (self.from_template, self.spec.template.as_deref()) {
            // The next pool's workers are forked while these exit, not after: a pool
            // opened right after this one then finds them (or waits less for them).
            if let Ok(key) = standby::Key::now(path, &self.spec.env) {
                standby::fill(key, self.slots.len());
            }
        }
        for slot in self.slots.iter().flatten() {
            let _ = channel::send(&slot.sock, Kind::Shutdown, 0, &[], &[], 0);
        }
        let deadline = Instant::now() + grace;
        let mut running = self.slots.iter().filter(|s| s.is_some()).count();
        while running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.wait(left) {
                Waited::Event(Event::Exited { .. }) => running -= 1,
                // A wake-up meant for the caller's dispatcher is not the end of the grace.
                Waited::Event(Event::Frame { .. } | Event::Dropped { .. }) | Waited::Woken => {}
                Waited::TimedOut => break,
            }
        }
        for slot in self.slots.iter_mut().filter_map(Option::take) {
            kill_slot(&slot);
            if let Some(reader) = slot.reader {
                let _ = reader.join();
            }
        }
    }
}

fn kill_slot(slot: &Slot) {
    match &slot.pidfd {
        // SAFETY: pidfd_send_signal on a pidfd we own; errors (already exited) are harmless.
        Some(pidfd) => unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        },
        // SAFETY: without pidfd support, kill the pid, which our reader has not reaped
        // yet (it reaps only after the socket closes, which killing causes).
        None => unsafe {
            libc::kill(slot.pid, libc::SIGKILL);
        },
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn sh(script: &str) -> WorkerSpec {
        WorkerSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            template: None,
        }
    }

    fn exited(supervisor: &Supervisor) -> (Option<i32>, Option<i32>) {
        loop {
            match supervisor.next_event(Duration::from_secs(10)) {
                Some(Event::Exited { code, signal, .. }) => return (code, signal),
                Some(Event::Frame { .. } | Event::Dropped { .. }) => continue,
                None => panic!("no exit reported"),
            }
        }
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        let supervisor = Supervisor::new(sh("exit 3"), 1).expect("spawn");
        assert_eq!(exited(&supervisor), (Some(3), None));
        let supervisor = Supervisor::new(sh("sleep 30"), 1).expect("spawn");
        supervisor.kill(0);
        assert_eq!(exited(&supervisor), (None, Some(libc::SIGKILL)));
    }

    #[test]
    fn wake_ends_a_wait_at_once() {
        let supervisor = Supervisor::new(sh("sleep 30"), 1).expect("spawn");
        let events = supervisor.events();
        let waiter = std::thread::spawn(move || {
            let start = Instant::now();
            let woken = matches!(events.wait(Duration::from_secs(20)), Waited::Woken);
            (woken, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        supervisor.events().wake();
        let (woken, waited) = waiter.join().expect("waiter");
        assert!(woken);
        // Not a timing assertion: the wait's own timeout is 20 s, far from either side.
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        // A wake-up is no event: nothing is left for try_next.
        supervisor.events().wake();
        assert!(supervisor.events().try_next().is_none());
        supervisor.kill(0);
        assert_eq!(exited(&supervisor), (None, Some(libc::SIGKILL)));
    }

    #[test]
    fn a_stray_wake_does_not_cut_the_shutdown_grace() {
        // The worker finishes on its own after the shutdown frame arrives; a wake-up
        // left in the channel must not make shutdown kill it before its grace is over.
        let dir = std::env::temp_dir().join(format!("oxjob-wake-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let marker = dir.join("finished");
        let script = format!("sleep 0.3; : > '{}'; exit 0", marker.display());
        let mut supervisor = Supervisor::new(sh(&script), 1).expect("spawn");
        supervisor.events().wake();
        supervisor.shutdown(Duration::from_secs(20));
        let finished = marker.exists();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(finished, "the worker was killed before its grace was over");
    }

    #[test]
    fn worker_gets_its_socket_as_descriptor_3() {
        // The shell writes into fd 3: a malformed frame, so the reader stops and reaps.
        let supervisor =
            Supervisor::new(sh("printf 'not a frame at all, 24+ bytes' >&3; exit 0"), 1)
                .expect("spawn");
        assert_eq!(exited(&supervisor), (Some(0), None));
    }

    #[test]
    fn frames_carry_bodies_and_descriptors() {
        let (a, b) = UnixStream::pair().expect("pair");
        let payload = memfd::from_bytes(&[5u8; 10_000]).expect("memfd");
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let sender = std::thread::spawn(move || {
            channel::send(&a, Kind::Batch, 7, &body, &[payload.as_fd()], 1).expect("send");
            channel::send(&a, Kind::EndCall, 8, &[], &[], 0).expect("send");
        });
        let frame = channel::recv(&b).expect("recv").expect("frame");
        assert_eq!((frame.header.kind, frame.header.tag), (Kind::Batch, 7));
        assert_eq!(frame.header.n_shared, 1);
        assert_eq!(frame.body.len(), 200_000);
        assert!(frame.body.iter().enumerate().all(|(i, &x)| x == i as u8));
        let mapping = memfd::Mapping::new(&frame.fds[0], memfd::MapMode::ReadOnly).expect("map");
        assert_eq!(mapping.len(), 10_000);
        let next = channel::recv(&b).expect("recv").expect("frame");
        assert_eq!(next.header.kind, Kind::EndCall);
        sender.join().expect("join");
        assert!(channel::recv(&b).expect("eof").is_none());
    }
}
