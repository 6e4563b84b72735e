"""The sizes both drivers apply, in one place so that a task sees the same thing wherever it runs.

A task's input travels to its process in ``KONDUKT_INPUT`` up to ``INPUT_ENV_LIMIT_BYTES`` (its JSON,
UTF-8) and through external payload storage beyond. The operator's limit was 32 KiB and ``kondukt
run``'s 128 KiB; 128 KiB is not even safe locally: Linux refuses one environment string of 128 KiB or
more (``MAX_ARG_STRLEN``, the variable's name included), and in a cluster the value is copied into the
Job and its pod, whose objects share etcd's 1.5 MiB limit with everything else in them. 32 KiB keeps
both far from those limits.
"""

from __future__ import annotations

from typing import Final

#: Inputs whose JSON is at most this many bytes travel in ``KONDUKT_INPUT``; larger ones through
#: external payload storage.
INPUT_ENV_LIMIT_BYTES: Final = 32 * 1024
