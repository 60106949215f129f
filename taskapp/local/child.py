"""Run a child of the local stack (``python -m MODULE ARGS``): it dies with the stack, ends fast.

Started as ``python -P child.py PARENT_PID MODULE ARGS...`` by ``taskapp.local.stack`` (a script
path, not ``-m taskapp.local.child``: importing the ``taskapp`` package would build the Celery app
before the child's own command line is read). Two changes from ``python -m MODULE``:

* **It dies with the stack.** On Linux the kernel sends it SIGKILL when its parent dies
  (``PR_SET_PDEATHSIG``), even when the parent is SIGKILLed and runs no clean-up. Celery's prefork
  pool children already do the same to the worker, so no grandchild survives either. The call is
  made here, in the child, rather than in a ``Popen(preexec_fn=...)``: the stack's process runs
  moto and the SMTP sink in threads, and ``preexec_fn`` is unsafe in a threaded parent. If the
  parent died before the call, ``getppid()`` no longer names it and the child exits at once.
  Elsewhere a daemon thread polls ``getppid()`` and kills the process when the parent is gone.
* **It ends when its program does.** Once the program returns (or raises ``SystemExit``), atexit
  handlers run (logging flushes there) and the process leaves with ``os._exit``. Python's own exit
  would first join every non-daemon thread (Flower's inspector pool then waits out one 3 s
  remote-control broadcast per queued call: 6 to 15 s measured) and then finalize every module,
  a full garbage collection of botocore's models and the rest (2 to 4 s measured for the worker on
  a loaded 2-core machine). Neither does anything a finished worker, beat or Flower needs.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from contextlib import suppress
from typing import NoReturn

__all__ = ["main", "PR_SET_PDEATHSIG"]

#: ``<linux/prctl.h>``: the signal this process gets when the thread that forked it exits.
PR_SET_PDEATHSIG = 1
#: How often the non-Linux fallback looks at its parent, in seconds.
PARENT_POLL = 0.5


def main(argv: list[str]) -> NoReturn:
    """``argv``: the parent's PID, then the module to run and its arguments."""
    parent, module, args = int(argv[0]), argv[1], argv[2:]
    die_with(parent)
    sys.path.insert(0, os.getcwd())  # what ``python -m`` puts first
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = _status(exc.code)
    except BaseException:  # the program's crash: report it as Python would, then end
        traceback.print_exc()
        status = 1
    leave(status)


def die_with(parent: int) -> None:
    """Make sure this process does not outlive ``parent``."""
    if sys.platform.startswith("linux") and _set_pdeathsig(signal.SIGKILL):
        if os.getppid() != parent:  # the parent died before the kernel watched it
            os._exit(1)
        return
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()


def _set_pdeathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0)
    except (OSError, AttributeError):  # no libc prctl here: fall back to polling
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os.kill(os.getpid(), signal.SIGKILL)


def leave(status: int) -> NoReturn:
    """Run atexit handlers, flush stdio, and end without joining threads or finalizing."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # closed or broken: nothing more to say
            stream.flush()
    os._exit(status)


def _status(code: object) -> int:
    """The exit status ``sys.exit(code)`` would give."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)  # noqa: T201 - as sys.exit(message) prints it
    return 1


if __name__ == "__main__":
    main(sys.argv[1:])
