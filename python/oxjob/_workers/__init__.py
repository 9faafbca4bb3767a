"""The engine room: the one task engine every process front end submits to.

- ``engine``: :class:`~oxjob._workers.engine.TaskEngine`, the dispatcher: tasks in,
  outcomes out; ``calls``: its records, a ``Call`` (one submitter's stream of tasks)
  and a ``Task``; ``segments``: the memfd segments large inputs travel in (a part of
  the engine, and each call's ``CallInputs``); ``functions``: the functions sent to
  workers; ``outcomes``: the exception types of each front end.
- ``shared_engine``: the engine ``Parallel`` calls and the joblib backend share;
  ``pool_engine``: a ``Pool``'s or ``ProcessPoolExecutor``'s own.
- ``processes``: a set of worker processes (the handle on the Rust supervisor);
  ``template``: the warm process workers are forked from; ``worker_start``: what a
  starting worker is sent (its initializer).
- ``protocol``: the frames and pickling between caller and workers; ``mainscript``:
  the caller's script in the workers; ``worker``: the worker's loop.

The front ends (``parallel`` through ``_parallel/runners.py``, ``pool``,
``_executor``, ``shared``, the joblib backend) call only the engine's API:
``shared_call``, ``open_pool``, ``TaskEngine.open_call`` and the public methods of
``Call`` and ``TaskEngine`` (docs/engine.md, "The engine's API"). When it loads, this
room imports only the floor (``exceptions``, ``_units``, ``_worker_env``, ``_engine``).
"""
