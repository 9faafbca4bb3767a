//! `delayed(f)(*args, **kwargs)` → `(f, args, kwargs)`, as joblib's, without a Python
//! frame per task: in `Parallel(delayed(f)(x) for x in xs)` the caller's generator is
//! the per-task cost, and most of it was the two Python calls of a Python `delayed`.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::sync::Mutex;

/// `f` wrapped so that calling it returns the call as `(f, args, kwargs)`.
///
/// Attributes of `f` (``__name__``, ``__qualname__`` ...) read through, as on
/// joblib's ``functools.wraps`` wrapper, and ``__wrapped__`` is `f`.
#[pyclass(module = "oxjob._engine", frozen)]
pub struct DelayedFunction {
    function: Py<PyAny>,
}

#[pymethods]
impl DelayedFunction {
    #[new]
    fn new(function: Py<PyAny>) -> Self {
        DelayedFunction { function }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = args.py();
        // A copy, as `**kwargs` makes: the dict given may be the caller's own.
        let kwargs = match kwargs {
            Some(given) => given.copy()?,
            None => PyDict::new(py),
        };
        let call = PyTuple::new(
            py,
            [
                self.function.bind(py).clone(),
                args.clone().into_any(),
                kwargs.into_any(),
            ],
        )?;
        untrack(&call);
        Ok(call)
    }

    #[getter]
    fn __wrapped__(&self, py: Python<'_>) -> Py<PyAny> {
        self.function.clone_ref(py)
    }

    fn __getattr__<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.function.bind(py).getattr(name)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("delayed({})", self.function.bind(py).repr()?))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> (Bound<'py, PyAny>, (Py<PyAny>,)) {
        (
            slf.get_type().into_any(),
            (slf.get().function.clone_ref(slf.py()),),
        )
    }
}

/// Take a task tuple out of the cycle collector's care. Task tuples are made by the
/// hundred thousand and live until dispatched; tracked, each collection walks them
/// all again (measured: the collector then cost more than building the tuples). A
/// task tuple is never part of a reference cycle unless its arguments are later
/// changed to contain it; such a cycle would only be kept alive, never freed early.
fn untrack(call: &Bound<'_, PyTuple>) {
    // SAFETY: `call` is a live tuple (a GC object) and we hold the GIL; untracking
    // only stops the cycle collector from visiting it.
    unsafe { ffi::PyObject_GC_UnTrack(call.as_ptr().cast()) }
}

/// Capture a call: ``delayed(f)(*args, **kwargs)`` returns ``(f, args, kwargs)``.
///
/// Parameters
/// ----------
/// function : callable
///     The function to run in a worker.
///
/// Returns
/// -------
/// DelayedFunction
///     A callable that returns the call as a tuple; ``function``'s attributes
///     (``__name__``, ``__qualname__`` ...) read through it and ``__wrapped__``
///     is ``function``, as on joblib's wrapper.
///
/// Examples
/// --------
/// >>> from oxjob import delayed
/// >>> delayed(pow)(2, 10)
/// (<built-in function pow>, (2, 10), {})
#[pyfunction]
pub fn delayed(function: Bound<'_, PyAny>) -> PyResult<Bound<'_, DelayedFunction>> {
    let py = function.py();
    if let Ok(last) = LAST.try_lock() {
        if let Some(known) = last
            .as_ref()
            .filter(|known| known.get().function.is(&function))
        {
            return Ok(known.bind(py).clone());
        }
    }
    let made = Bound::new(
        py,
        DelayedFunction {
            function: function.unbind(),
        },
    )?;
    let replaced = LAST
        .try_lock()
        .ok()
        .map(|mut last| last.replace(made.clone().unbind()));
    drop(replaced); // released outside the lock: it may be the last reference to a function
    Ok(made)
}

/// The last wrapper made: `delayed(f)(x) for x in xs` asks for the same one per task,
/// and making it cost a fifth of the task's whole dispatch. Held until another
/// function is wrapped or a `Parallel` call ends ([`forget_delayed`]), so it never
/// keeps a function (and what its closure holds) alive beyond the call it served.
/// Only `try_lock`: a busy or fork-inherited lock just skips the cache.
static LAST: Mutex<Option<Py<DelayedFunction>>> = Mutex::new(None);

/// Drop the wrapper `delayed` keeps for reuse (at the end of a `Parallel` call).
#[pyfunction]
pub fn forget_delayed() {
    let forgotten = LAST.try_lock().ok().and_then(|mut last| last.take());
    drop(forgotten);
}

/// One function over a sequence of arguments: `(f, arguments, single)`.
type UniformCalls<'py> = (Bound<'py, PyAny>, Bound<'py, PyTuple>, bool);

/// `(f, arguments, single)` when every task of `tasks` calls the same `f` with
/// positional arguments only (the common batch), else `None`: `arguments` holds the
/// argument tuples or, when every call has exactly one argument (`single`), the
/// arguments themselves, which pickle without a tuple and a memo entry each. A
/// C-speed transpose: Python's `zip(*tasks)` allocates an iterator per task.
#[pyfunction]
pub fn uniform_calls<'py>(tasks: &Bound<'py, PyList>) -> PyResult<Option<UniformCalls<'py>>> {
    let py = tasks.py();
    let mut function: Option<Bound<'py, PyAny>> = None;
    let mut positional = Vec::with_capacity(tasks.len());
    let mut single = true;
    for task in tasks.iter() {
        let Ok(task) = task.cast_into::<PyTuple>() else {
            return Ok(None);
        };
        if task.len() != 3 {
            return Ok(None);
        }
        let func = task.get_item(0)?;
        match &function {
            Some(first) if !first.is(&func) => return Ok(None),
            Some(_) => {}
            None => function = Some(func),
        }
        match task.get_item(2)?.cast_into::<PyDict>() {
            Ok(kwargs) if kwargs.is_empty() => {}
            _ => return Ok(None),
        }
        let args = task.get_item(1)?;
        single = single && args.cast::<PyTuple>().is_ok_and(|args| args.len() == 1);
        positional.push(args);
    }
    let Some(function) = function else {
        return Ok(None);
    };
    if single {
        let arguments = positional
            .iter()
            .map(|args| args.get_item(0))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Some((function, PyTuple::new(py, arguments)?, true)));
    }
    Ok(Some((function, PyTuple::new(py, positional)?, false)))
}
