"""What both drivers do the same way around the engine: the operator (``kondukt.kube``) and
``kondukt run`` (``kondukt.local``) import this package, and it imports neither (an import-linter
contract), so a workflow behaves the same locally and in a cluster.

- ``limits``: the sizes both drivers apply (when a task's input leaves the environment);
- ``http``: Conductor's HTTP system task, performed by the driver itself under its egress policy;
- ``dispatch``: the engine's actions (the closed ``Action`` union) handed to one driver's handlers;
- ``load``: a namespace's load (tasks running per task definition, recent starts) for the engine's
  concurrency and rate limits.
"""
