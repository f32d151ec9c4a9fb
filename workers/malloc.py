"""How many malloc arenas a fleet process keeps.

glibc gives threads that allocate at once arenas of their own, up to eight per core, and hands
their freed memory back to the system only in part. A threads pool of a hundred task threads then
holds memory by how many threads ever ran at once, not by its work: the transfer worker's peak
grew from 207 to 265 MB between a 200- and a 1,000-image Immersal submission with the same
16 chunks in flight, and stayed at 173 to 180 MB with two arenas (bench/README.md, Immersal).
MALLOC_ARENA_MAX in the environment, when set, is the operator's choice and wins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

from celery.signals import worker_init

from config.settings import get_settings

log = logging.getLogger("geoqueue.worker")

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_arenas(arenas: int) -> bool:
    """Keep at most `arenas` malloc arenas in this process; False where the C library has no such knob."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to set
        return False


@worker_init.connect
def _limit_arenas_before_the_pool(**_kwargs) -> None:
    arenas = get_settings().malloc_arenas
    if arenas and "MALLOC_ARENA_MAX" not in os.environ and not limit_arenas(arenas):
        log.info("malloc arenas left as they are: this C library has no mallopt(M_ARENA_MAX)")
