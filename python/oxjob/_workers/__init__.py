"""The engine room: the one task engine every process front end submits to.

- ``engine``: :class:`~oxjob._workers.engine.TaskEngine`, the dispatcher: tasks in,
  outcomes out; ``calls``: its records, a ``Call`` (one submitter's stream of tasks)
  and a ``Task``; ``segments``: the memfd segments large inputs travel in;
  ``functions``: the functions sent to workers; ``outcomes``: the exception types of
  each front end; ``shared_engine``: the engine ``Parallel`` calls and the joblib
  backend share.
- ``processes``: a set of worker processes (the Rust supervisor's handle);
  ``template``: the warm process workers are forked from; ``worker_start``: what a
  starting worker is sent (its initializer).
- ``protocol``: the frames and pickling between caller and workers; ``mainscript``:
  the caller's script in the workers; ``worker``: the worker's loop.

What the front ends (``parallel``, ``pool``, ``_executor``, ``shared``, the joblib
backend) may call is the engine's API: ``TaskEngine.open_call`` and the methods of
``Call`` (see docs/engine.md); nothing else of this room. When it loads, this room
imports only the floor (``exceptions``, ``_units``, ``_worker_env``, ``_engine``).
"""
