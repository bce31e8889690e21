"""GPU workers: one per device, each owning its loaded pipelines.

- `protocol`: the plain messages that cross the worker boundary, and the `WorkerLink` that the
  pool talks to (a child process, or a Ray actor on another machine through a relay).
- `config`: which workers exist and which models each may hold; GPU discovery.
- `runtime`: the engine-side command loop (transport-independent; imports no torch itself).
- `process`: the parent side of a child-process worker; `child`: the child's entry point.
- `links`: which link serves a worker (`make_link`, the pool's default link factory).
- `ray_config`, `ray_relay`, `ray_actor`: a GPU of another machine as a Ray actor, reached
  through a relay process that speaks the same protocol (Ray, an optional extra, is imported
  only by the relay and the actor).
- `standin`: an engine of known duration, with no torch, for tests and benchmarks.
"""
