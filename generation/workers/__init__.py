"""GPU workers: one per device, each owning its loaded pipelines.

- `protocol`: the plain messages that cross the worker boundary, and the `WorkerLink` that the
  pool talks to (a child process today; a Ray actor on another machine can implement it too).
- `config`: which workers exist and which models each may hold; GPU discovery.
- `runtime`: the engine-side command loop (transport-independent; imports no torch itself).
- `process`: the parent side of a child-process worker; `child`: the child's entry point.
- `standin`: an engine of known duration, with no torch, for tests and benchmarks.
"""
