//! `oxjob._engine`: converts between Python and `oxjob-core`; holds no logic of its own,
//! besides `delayed` (delayed.rs), which runs once per task and had to be native.

use pyo3::prelude::*;

mod buffer;
mod container;
mod delayed;
mod errors;
mod hash;
mod kept;
mod segment;
mod store;
mod workers;

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<buffer::OwnedBuffer>()?;
    m.add_class::<delayed::DelayedFunction>()?;
    m.add_function(wrap_pyfunction!(delayed::delayed, m)?)?;
    m.add_function(wrap_pyfunction!(delayed::forget_delayed, m)?)?;
    m.add_function(wrap_pyfunction!(delayed::uniform_calls, m)?)?;
    m.add_class::<hash::StreamHasher>()?;
    m.add_class::<store::Store>()?;
    m.add_class::<workers::Supervisor>()?;
    m.add_class::<segment::Segment>()?;
    m.add_function(wrap_pyfunction!(segment::buffer_address, m)?)?;
    m.add_class::<workers::WorkerChannel>()?;
    m.add_function(wrap_pyfunction!(workers::watch_parent, m)?)?;
    m.add_function(wrap_pyfunction!(workers::fork_sibling, m)?)?;
    m.add_function(wrap_pyfunction!(container::write_file, m)?)?;
    m.add_function(wrap_pyfunction!(container::write_stream, m)?)?;
    m.add_function(wrap_pyfunction!(container::read_file, m)?)?;
    m.add_function(wrap_pyfunction!(container::read_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(container::layout_file, m)?)?;
    m.add_function(wrap_pyfunction!(container::mark_unverified, m)?)?;
    m.add_function(wrap_pyfunction!(container::codec_names, m)?)?;
    m.add_function(wrap_pyfunction!(container::default_threads, m)?)?;
    m.add(
        "CorruptFileError",
        m.py().get_type::<errors::CorruptFileError>(),
    )?;
    m.add("ALIGN", oxjob_core::container::ALIGN)?;
    // The one version source: the Cargo workspace's, which maturin also writes into the
    // package metadata.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
