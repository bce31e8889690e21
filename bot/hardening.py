"""The bot process hides itself from other processes of its OS user.

Workers run as the same OS user, and so may anything else that user runs. By default such a
process can read `/proc/<bot pid>/environ` (holding `DISCORD_TOKEN`) and `/proc/<pid>/mem`, or
attach a debugger. Linux's `prctl(PR_SET_DUMPABLE, 0)` makes the bot's `/proc/<pid>/` files
owned by root and refuses ptrace to processes of the same user without `CAP_SYS_PTRACE`
(proc(5), prctl(2), ptrace(2) "Ptrace access mode checking"). Children the bot starts with
`exec` (the workers) are dumpable again: only the bot hides. Root, or a process of the user with
`CAP_SYS_PTRACE`, still reads everything: for the strongest isolation run workers as another OS
user (README, Security).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def make_undumpable() -> bool:
    """Mark this process non-dumpable (Linux); True when done, False elsewhere or on failure
    (logged: the bot runs on, as exposed as any process of its user)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed (errno %s)", ctypes.get_errno())
        return False
    return True
