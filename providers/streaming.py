"""Commands whose input and output are streams: a tar stream in, pip's output out, live.

`Transport.run` buffers both ends, which is right for short commands and wrong for a 200 MB
sync bundle or a five-minute `pip install`. `stream_command` runs a command on any transport
with its stdin fed from an iterator of byte chunks and its output delivered to a callback as it
arrives; it can be cancelled and times out. Transports that can stream (`SSHTransport`, the
local machine) do it for real; any other transport falls back to a buffered `run`.
"""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from providers.base import CommandResult, Transport, TransportError

#: how much of a streamed output a CommandResult keeps (for error messages)
TAIL_BYTES = 64 * 1024

OutputCallback = Callable[[bytes], None]
CancelCheck = Callable[[], bool]


class CommandCancelled(TransportError):
    """The caller cancelled the command; it was killed."""


def cancel_check(cancel: threading.Event | CancelCheck | None) -> CancelCheck:
    """A threading.Event, a callable or None, as one callable."""
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


def stream_command(
    transport: Transport,
    argv: Sequence[str],
    *,
    stdin_chunks: Iterable[bytes] | None = None,
    on_output: OutputCallback | None = None,
    merge_stderr: bool = False,
    timeout: float | None = None,
    cancel: threading.Event | CancelCheck | None = None,
    cwd: str | None = None,
) -> CommandResult:
    """Run argv on the transport's machine, streaming stdin and stdout (see module doc)."""
    streaming = getattr(transport, "run_streaming", None)
    if streaming is not None:
        return streaming(
            argv,
            stdin_chunks=stdin_chunks,
            on_output=on_output,
            merge_stderr=merge_stderr,
            timeout=timeout,
            cancel=cancel,
            cwd=cwd,
        )
    from providers.local import LocalTransport  # local import: avoids a cycle at import time

    if isinstance(transport, LocalTransport):
        return popen_streaming(
            list(argv),
            tuple(argv),
            stdin_chunks=stdin_chunks,
            on_output=on_output,
            merge_stderr=merge_stderr,
            timeout=timeout,
            cancel=cancel,
            cwd=cwd,
        )
    # A transport that cannot stream: buffer the input, deliver the output at the end.
    is_cancelled = cancel_check(cancel)
    data = None
    if stdin_chunks is not None:
        parts = []
        for chunk in stdin_chunks:
            if is_cancelled():
                raise CommandCancelled(f"`{shlex.join(argv)}` was cancelled")
            parts.append(chunk)
        data = b"".join(parts)
    result = transport.run(argv, input=data, timeout=timeout, cwd=cwd)
    if on_output is not None:
        on_output(result.stdout + (result.stderr if merge_stderr else b""))
    return result


def popen_streaming(
    popen_argv: list[str],
    display_argv: tuple[str, ...],
    *,
    stdin_chunks: Iterable[bytes] | None,
    on_output: OutputCallback | None,
    merge_stderr: bool,
    timeout: float | None,
    cancel: threading.Event | CancelCheck | None,
    cwd: str | None = None,
    describe_timeout: Callable[[], str] | None = None,
    on_abort: Callable[[bytes], None] | None = None,
) -> CommandResult:
    """Run a local process (which may be `ssh`) with streamed stdin/stdout.

    The writer runs in a thread so a slow reader never deadlocks a fast writer; output is read
    in a thread and handed to `on_output` chunk by chunk. With `on_output`, the result keeps
    only the last TAIL_BYTES of stdout and of stderr; without it, all of both.

    On cancel or timeout, `on_abort(first bytes of stderr)` runs before the process is killed:
    an `ssh` client hands its pipes to the shared master connection, so killing the client
    alone neither ends the remote command nor closes the pipes; the hook ends it on the host.
    """
    is_cancelled = cancel_check(cancel)
    try:
        process = subprocess.Popen(
            popen_argv,
            stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            cwd=cwd,
        )
    except FileNotFoundError as err:
        raise TransportError(f"cannot run {popen_argv[0]!r}: {err.strerror}") from None

    if process.stdin is not None:
        # A 1 MiB pipe lets the producer (tar + gzip here) run ahead of ssh's encryption
        # instead of alternating with it 64 KiB at a time.
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(process.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)

    stdout_tail = bytearray()
    stderr_tail = bytearray()
    stderr_head = bytearray()
    writer_error: list[BaseException] = []

    # Without a callback the caller wants the whole output, like subprocess.run gives it.
    keep_all = on_output is None

    def keep_tail(buffer: bytearray, data: bytes) -> None:
        buffer += data
        if not keep_all and len(buffer) > TAIL_BYTES:
            del buffer[: len(buffer) - TAIL_BYTES]

    def read_stdout() -> None:
        assert process.stdout is not None
        while chunk := process.stdout.read1(65536):
            keep_tail(stdout_tail, chunk)
            if on_output is not None:
                on_output(chunk)

    def read_stderr() -> None:
        assert process.stderr is not None
        while chunk := process.stderr.read1(65536):
            if len(stderr_head) < 4096:
                stderr_head.extend(chunk[: 4096 - len(stderr_head)])
            keep_tail(stderr_tail, chunk)

    def write_stdin() -> None:
        assert process.stdin is not None and stdin_chunks is not None
        try:
            for chunk in stdin_chunks:
                if is_cancelled():
                    break
                process.stdin.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the process ended early; its exit status and stderr say why
        except BaseException as err:  # an error producing the input (a file vanished, ...)
            writer_error.append(err)
        finally:
            with contextlib.suppress(OSError, ValueError):
                process.stdin.close()

    threads = [threading.Thread(target=read_stdout, daemon=True)]
    if not merge_stderr:
        threads.append(threading.Thread(target=read_stderr, daemon=True))
    if stdin_chunks is not None:
        threads.append(threading.Thread(target=write_stdin, daemon=True))
    for thread in threads:
        thread.start()

    deadline = None if timeout is None else time.monotonic() + timeout
    outcome = "done"
    while True:
        try:
            process.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if is_cancelled():
            outcome = "cancelled"
        elif deadline is not None and time.monotonic() > deadline:
            outcome = "timeout"
        if outcome != "done":
            if on_abort is not None:
                with contextlib.suppress(Exception):
                    on_abort(bytes(stderr_head))
            process.kill()
            process.wait()
            break
    for thread in threads:
        thread.join(timeout=5 if outcome == "done" else 2)
    if outcome == "cancelled":
        raise CommandCancelled(f"`{shlex.join(display_argv)}` was cancelled")
    if outcome == "timeout":
        what = describe_timeout() if describe_timeout else f"`{shlex.join(display_argv)}`"
        raise TransportError(f"{what} took longer than {timeout:.0f} s and was stopped")
    if writer_error:
        raise writer_error[0]
    return CommandResult(display_argv, process.returncode, bytes(stdout_tail), bytes(stderr_tail))
