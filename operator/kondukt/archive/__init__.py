"""The workflow archive: finished Workflows kept in PostgreSQL after they leave the cluster.

Why it exists: a Workflow object in etcd is the cluster's working state, not a history — at hundreds of
workflows a minute etcd cannot keep them all. The operator (``kondukt.kube.retention``) writes each finished
Workflow here once (keyed by its uid, an upsert: a restart mid-write archives it once) before its TTL may
delete it, and ``kondukt get|describe|graph --archived`` read it back.

- ``records``, ``errors``: what one archived workflow is, what can go wrong (pure, no I/O);
- ``selectors``: the filters of ``kondukt get --archived`` (label selectors, times) turned into SQL (pure);
- ``migrations``: the versioned schema, applied in order under an advisory lock;
- ``store``: the psycopg 3 client (async): migrate, archive, find, get, prune.

This package never imports the Kubernetes driver, the CLI or Kopf: both the operator and the CLI use it.
"""

#: Where ``kondukt operator --archive`` and ``kondukt get|describe|graph --archived`` find the connection string.
DSN_ENV = "KONDUKT_ARCHIVE_DSN"
