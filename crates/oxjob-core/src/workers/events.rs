//! What a supervisor's reader threads report, and the channel they report on.

use super::channel::Frame;
use super::frame;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Something that happened to a worker.
#[derive(Debug)]
pub enum Event {
    /// A frame arrived.
    Frame {
        /// Worker slot.
        worker: usize,
        /// Which incarnation of the slot sent it.
        generation: u64,
        /// The frame.
        frame: Frame,
    },
    /// A frame arrived whose body could not be allocated: it was skipped (its
    /// descriptors closed) and the worker's stream goes on.
    Dropped {
        /// Worker slot.
        worker: usize,
        /// Which incarnation of the slot sent it.
        generation: u64,
        /// The skipped frame's header.
        header: frame::Header,
        /// Why it could not be kept.
        reason: String,
    },
    /// The worker's process ended and was reaped.
    Exited {
        /// Worker slot.
        worker: usize,
        /// Which incarnation ended.
        generation: u64,
        /// Exit code, for a normal exit.
        code: Option<i32>,
        /// Signal number, when killed by a signal.
        signal: Option<i32>,
    },
}

/// What travels on the events channel: an event, or a wake-up that ends a wait early.
pub(super) enum Signal {
    Event(Event),
    Wake,
}

/// How a wait for an event ended.
pub enum Waited {
    /// An event arrived.
    Event(Event),
    /// [`Events::wake`] ended the wait.
    Woken,
    /// Nothing within the timeout.
    TimedOut,
}

/// The receiving end of a supervisor's events, usable without locking the
/// supervisor itself, so that one thread can wait for events while another sends.
#[derive(Clone)]
pub struct Events {
    rx: Arc<Mutex<Receiver<Signal>>>,
    /// For [`Events::wake`]: a waiting thread can only be woken through its channel.
    tx: Sender<Signal>,
}

impl Events {
    /// The next event, waiting at most `timeout`; `None` after the timeout or
    /// when [`Events::wake`] ended the wait.
    pub fn next(&self, timeout: Duration) -> Option<Event> {
        match self.wait(timeout) {
            Waited::Event(event) => Some(event),
            Waited::Woken | Waited::TimedOut => None,
        }
    }

    /// The next event, waiting at most `timeout`, saying why a wait ended without one.
    pub fn wait(&self, timeout: Duration) -> Waited {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match rx.recv_timeout(timeout) {
            Ok(Signal::Event(event)) => Waited::Event(event),
            Ok(Signal::Wake) => Waited::Woken,
            Err(_) => Waited::TimedOut,
        }
    }

    /// An event already waiting, if any (wake-ups are passed over).
    pub fn try_next(&self) -> Option<Event> {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            match rx.try_recv() {
                Ok(Signal::Event(event)) => return Some(event),
                Ok(Signal::Wake) => continue,
                Err(_) => return None,
            }
        }
    }

    /// End the current (or the next) wait of [`Events::next`] now, with no event: a
    /// thread that owns the waiting loop is told to look at its own state (stopping,
    /// retiring) without waiting for its timeout.
    pub fn wake(&self) {
        // The supervisor holds a sender as long as the receiver lives: this cannot fail.
        let _ = self.tx.send(Signal::Wake);
    }
}

/// A new events channel: the sender for the reader threads (and wake-ups), and the
/// receiving end.
pub(super) fn events_channel() -> (Sender<Signal>, Events) {
    let (tx, rx) = channel();
    let events = Events {
        rx: Arc::new(Mutex::new(rx)),
        tx: tx.clone(),
    };
    (tx, events)
}
