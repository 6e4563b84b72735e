"""The workflow archive: finished Workflows kept in PostgreSQL after they leave the cluster.

Why it exists: a Workflow object in etcd is the cluster's working state, not a history — at hundreds of
workflows a minute etcd cannot keep them all. The operator (``kondukt.kube.retention``) writes each finished
Workflow here once (keyed by its uid, an upsert: a restart mid-write archives it once) before its TTL may
delete it, and ``kondukt get|describe|graph --archived`` read it back.

- ``records``, ``errors``: what one archived workflow is, what can go wrong (pure, no I/O).

This package never imports the Kubernetes driver, the CLI or Kopf: both the operator and the CLI use it.
"""
