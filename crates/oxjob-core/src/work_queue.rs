//! A tiny work queue on scoped threads: [`for_each`] and [`map`] run one closure over
//! many items (a container's chunks, the pages of a memfd copy) on several cores.
//!
//! Chunks are large (megabytes), so a mutex-guarded iterator costs nothing next to
//! the work, and scoped threads let workers borrow the caller's slices without
//! copies or `unsafe`. This avoids pulling a thread-pool crate into the build.

use std::sync::Mutex;

/// Number of threads to use by default: the CPUs this process may run on.
///
/// Computed once: the standard library reads cgroup files on every call, which
/// would cost more than a small cache hit.
pub fn default_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// Run `work` on every item of `items`, on up to `threads` threads, and stop at
/// the first error (items not yet started are skipped).
pub fn for_each<I, F, E>(items: I, threads: usize, work: F) -> std::result::Result<(), E>
where
    I: Iterator + Send,
    I::Item: Send,
    F: Fn(I::Item) -> std::result::Result<(), E> + Sync,
    E: Send,
{
    let threads = threads.max(1);
    if threads == 1 {
        for item in items {
            work(item)?;
        }
        return Ok(());
    }
    let queue = Mutex::new(Some(items));
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let run = || loop {
        let next = {
            let mut guard = match queue.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.as_mut().and_then(Iterator::next)
        };
        let Some(item) = next else { break };
        if let Err(err) = work(item) {
            let mut slot = match first_error.lock() {
                Ok(slot) => slot,
                Err(poisoned) => poisoned.into_inner(),
            };
            slot.get_or_insert(err);
            // Drain the queue so the other threads stop too.
            if let Ok(mut guard) = queue.lock() {
                *guard = None;
            }
            break;
        }
    };
    std::thread::scope(|scope| {
        // A thread that cannot be started (no memory for its stack) is simply one
        // helper fewer: the calling thread works through the queue too.
        for _ in 1..threads {
            if std::thread::Builder::new()
                .spawn_scoped(scope, run)
                .is_err()
            {
                break;
            }
        }
        run();
    });
    let slot = first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    slot.map_or(Ok(()), Err)
}

/// Map `work` over `0..n` on up to `threads` threads, returning results in index order.
pub fn map<T, F, E>(n: usize, threads: usize, work: F) -> std::result::Result<Vec<T>, E>
where
    T: Send,
    F: Fn(usize) -> std::result::Result<T, E> + Sync,
    E: Send,
{
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for_each(slots.iter_mut().enumerate(), threads, |(index, slot)| {
        *slot = Some(work(index)?);
        Ok(())
    })?;
    Ok(slots.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order() {
        let out: Vec<usize> = map(100, 4, |i| Ok::<_, ()>(i * 2)).unwrap_or_default();
        assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn first_error_is_returned() {
        let result = for_each(0..1000, 3, |i| if i == 500 { Err(i) } else { Ok(()) });
        assert_eq!(result, Err(500));
    }
}
