"""Ctrl-C for the command line: stop within seconds, whatever the flow's main thread is doing.

Python runs a signal handler only in the main thread, between bytecodes. The kernel may deliver the
terminal's SIGINT to any thread of the process (Prefect's event-loop and log threads among them), and
then a main thread blocked in a call (a request to the temporary Prefect server, which the same
Ctrl-C is shutting down) would not run the handler until that call times out, a minute later. So the
signal is taken from the wakeup fd, which the interpreter writes from whichever thread received it,
and acted on by a thread of its own.

Not through Prefect's own interrupt handling either: the terminal's SIGINT also reaches the
temporary server, and a flow that reports its end to a stopped server waits for it forever. Every
finished epoch is already on disk (state file and snapshot, written atomically) and every loaded
batch in the warehouse, so stopping now loses at most the epochs and batches in flight.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager, suppress
from typing import Iterator

INTERRUPTED = 130  # the shell's status for a command ended by SIGINT


def _say(text: str) -> None:
    """Write straight to stderr: another thread may hold the lock of sys.stderr or of a logging handler."""
    os.write(2, (text + "\n").encode())


def _stop() -> None:
    """End the pool workers and the temporary Prefect server, say what was kept, exit, whatever fails
    on the way: each process is ended best-effort, since the pool's own thread may be ending (and
    closing) the same workers at the same moment."""
    try:
        _say("\ninterrupted: stopping the workers (Ctrl-C again to exit at once)")
        workers = multiprocessing.active_children()
        for worker in workers:
            with suppress(ValueError, OSError):  # already closed or gone
                worker.kill()
        for worker in workers:
            with suppress(ValueError, OSError):
                worker.join(timeout=5)
        server_module = sys.modules.get("prefect.server.api.server")  # only if the flow started one
        for server in list(server_module.SubprocessASGIServer._instances.values()) if server_module else []:
            if server.server_process is not None:
                with suppress(OSError, subprocess.TimeoutExpired):
                    server.server_process.kill()
                    server.server_process.wait(timeout=5)
        _say("stopped. Finished epochs, snapshots and loaded graphs are kept; run the same command again "
             "to resume from them.")
    finally:
        os._exit(INTERRUPTED)


_stop_started = threading.Lock()


def _begin_stop() -> None:
    """Start `_stop` in a thread of its own, once."""
    if _stop_started.acquire(blocking=False):
        threading.Thread(target=_stop, name="interrupt-stop", daemon=True).start()


def _hold_main_thread(signum, frame) -> None:
    """The main thread's handler: begin the stop (if the watcher has not) and run no more of the
    flow's code, which would otherwise go on recording the killed workers' tasks as failed."""
    _begin_stop()
    threading.Event().wait()  # until `_stop` ends the process


def _watch(receiver: socket.socket) -> None:
    """The first SIGINT begins the stop; a second exits at once. Other signals that reach the wakeup
    fd (any with a Python handler) are left to their handlers."""
    interrupts = 0
    while data := receiver.recv(64):
        for signum in data:
            if signum != signal.SIGINT:
                continue
            interrupts += 1
            if interrupts == 1:
                _begin_stop()
            else:
                os._exit(INTERRUPTED)


@contextmanager
def stop_on_interrupt() -> Iterator[None]:
    """Within this block, Ctrl-C ends the command (status 130) with its workers and temporary server.
    Enter it in the main thread, before Prefect starts."""
    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    previous_handler = signal.signal(signal.SIGINT, _hold_main_thread)
    previous_fd = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(receiver,), name="interrupt-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        receiver.shutdown(socket.SHUT_RDWR)  # ends the watcher's recv
        watcher.join()
        receiver.close()
        sender.close()
