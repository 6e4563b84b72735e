"""Kondukt's Kubernetes driver: the Kopf operator that runs workflows as Jobs, and the CRDs.

Modules, from pure to I/O:

- ``resources``: API group, kinds, label and annotation keys (constants only);
- ``crdgen``: the CRDs, generated from the engine's models (``make crds``);
- ``schedule``: CronWorkflow: its spec, cron times in a time zone, the plan of one reconcile (pure);
- ``names``: deterministic, length-limited names of Jobs and child Workflows;
- ``builders``: pure ``build_*`` functions for Jobs, child and started Workflows, Events;
- ``attempts``: what a Job, its pod or a child Workflow says about a task attempt (TaskUpdate);
- ``conditions``: status conditions as GitOps tools read them (Ready, abnormal-true Reconciling/Stalled);
- ``status``: the Workflow ``status`` codec (engine state <-> status, conditions, progress, compaction);
- ``cache``: the records the reconcile reads (Jobs, pods, children, TaskDefs, WorkflowDefs) and its view;
- ``informer``: list+watch of the attempts' Jobs and pods into in-memory indexes (Kopf indexes the rest);
- ``workqueue``: one reconcile at a time per workflow, many in parallel, exact timers;
- ``kubeapi``: the few API calls the operator makes (async, never blocking the event loop; writes fenced
  by the leader election);
- ``leader``: leader election among replicas with a Lease (client-go's semantics): who may act, when;
- ``shards``: with ``--shards``, one such Lease per shard, a fair share per replica, the per-shard fence;
- ``claims``: with ``--shards``, rate and concurrency limits held across replicas (claims in a Lease);
- ``opsannotations``: the format of the ``ops.kondukt.io/<op>`` operation requests (the CLI writes them);
- ``memo``: the reconcile's settings, what it remembers about a Workflow, what one reconcile returns;
- ``offload``: values too large for the status, kept in external payload storage;
- ``retention``: finished Workflows archived (when the archive is on) and deleted after their ttlStrategy;
- ``start``: starting a Workflow's run (finding and validating its definitions, waiting for them);
- ``actions``: carrying out the engine's actions (Jobs, child Workflows, HTTP, jq) and the namespace's load;
- ``observe``: what a reconcile observes (TaskDefs, operations, news about the attempts in flight);
- ``definitions``: the TaskDefs' and WorkflowDefs' health (references resolve, validation) in their status;
- ``reconcile``: one level-based reconcile of one Workflow: observe, ``decide``, act, write status;
- ``cronworkflows``: the CronWorkflow controller (clock, runs listed, the schedule's plan carried out);
- ``events``, ``metrics``: Kubernetes Events and Prometheus metrics;
- ``operator``: Kopf settings and handlers, and ``run_operator`` (``kondukt operator`` is in ``kondukt.cli``).

The HTTP system task and the sizes both drivers share are in ``kondukt.driver``.
The engine (``kondukt.engine``) is the only place that decides anything about a workflow; this package
observes, calls ``decide`` and carries out the actions. It never writes a user's ``spec``.
"""
