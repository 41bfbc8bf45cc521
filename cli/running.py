"""How a command runs for a person: progress on stderr (a live bar on a terminal), the result alone on stdout,
bad input as one line and exit code 2, Ctrl-C or SIGTERM ending it within seconds with what was written kept."""
from __future__ import annotations

import functools
import signal
import sys

import typer

from selkd_ray.progress import Step


def say(message: str) -> None:
    typer.echo(message, err=True)


INTERRUPTED = 130  # the shell's code for a command ended by SIGINT


def one_line_errors(command):
    """Bad input ends in one line on stderr and exit code 2, never a traceback; Ctrl-C or SIGTERM stops the
    command within seconds, exit code 130 (see `stop_now`)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from selkd_ray.errors import SelkdError

        previous = None
        if in_main_thread():
            # a parent may hand us SIGINT/SIGTERM blocked or ignored (a supervisor's mask, a test runner's
            # state): stopping must work whatever we inherited
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            return command(*args, **kwargs)
        except SelkdError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except OSError as err:  # a write the file system refused: one line naming the file, never exit 1
            typer.echo(f"error: {failed_write(err)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            stop_now()
        finally:
            if previous is not None:  # the work is written; a SIGTERM while the process winds down (Ray's own
                # shut-down at exit) still ends it as a stop, exit 130, not killed by the signal
                signal.signal(signal.SIGTERM, previous if previous not in (signal.SIG_DFL, None) else after_work)

    return run


def failed_write(err: OSError) -> str:
    """A refused read or write in words: the file, the reason, and for a full disk that what was written
    before stays whole (every table is written to a staging file and moved into place)."""
    import errno

    where = err.filename or "a file"
    if err.filename2:
        where = f"{err.filename} -> {err.filename2}"
    reason = {errno.ENOSPC: "no space left on the device; the files written before are kept whole",
              errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EISDIR: "is a directory, expected a file path", errno.EEXIST: "exists and is not a folder",
              errno.ENOTDIR: "a part of the path is a file, expected a folder",
              errno.ENAMETOOLONG: "the path is too long for the file system"}.get(err.errno, err.strerror or str(err))
    return f"{where}: {reason}"


def in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def after_work(signum, frame) -> None:
    """SIGTERM after a command's work is written: stop as a stop does (exit 130), with nothing left to lose."""
    stop_now()


def interrupt(signum, frame) -> None:
    """SIGTERM (a scheduler, `kill`, a container stop) stops a command exactly as Ctrl-C does."""
    raise KeyboardInterrupt


def stop_now(grace: float = 5.0) -> None:
    """End the process at once, leaving what is written: every output is written whole and atomically (a
    reader sees the old file or the new one), the lock goes with the process, and the same command resumes
    (cached predictions, Ray Train checkpoints, finished race trials). Ray is shut down with a deadline, so
    its own graceful aborts cannot hold the process for a minute."""
    import os
    import threading

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the shut-down
    typer.echo("interrupted: stopping; what was written is kept, and the same command resumes from it", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            closing = threading.Thread(target=ray.shutdown, daemon=True)
            closing.start()
            closing.join(grace)
    os._exit(INTERRUPTED)


class Display:
    """Progress for people: a live bar on a terminal (done / total, status) with the log lines above it;
    plain log lines on stderr otherwise; with --quiet only warnings (on stderr). Takes `Step`s (a scan's events are Steps) and
    plain strings."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet, self.bar, self.task = quiet, None, None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=False)

    def __call__(self, event: Step | str) -> None:
        message = str(event)
        if self.quiet:
            if message.startswith("warning:"):  # a fallback the user must hear of, even with --quiet / --json
                say(message)
            return
        if self.bar is None or not isinstance(event, Step):
            if message:
                say(message) if self.bar is None else self.bar.console.print(message)
            return
        if message and event.logged:
            self.bar.console.print(message)
        if self.task is None or self.bar.tasks[self.task].description != event.stage:
            self.task = self.bar.add_task(event.stage, total=None, counts="")
        self.bar.update(self.task, completed=event.done, total=event.total or None, counts=event.counts)

    def __enter__(self) -> "Display":
        # stdout carries the command's result alone (--json parses it): while the work runs, what anything else
        # prints to stdout goes to stderr (Ray's driver prints raylet warnings to stdout)
        self.out, sys.stdout = sys.stdout, sys.stderr
        if self.bar is not None:
            self.bar.start()
        return self

    def result(self, text: str) -> None:
        """The command's result, on stdout."""
        typer.echo(text, file=self.out)

    def __exit__(self, *exc) -> None:
        sys.stdout = self.out  # restored, not dropped: the stream is the caller's (a test runner reads it after)
        if self.bar is not None:
            self.bar.stop()


def everywhere(verbose: bool = typer.Option(False, "--verbose", help="Leave Ray's logging as Ray sets it: its C++ "
                                            "core's lines and the raylet's messages on the terminal, its session "
                                            "logs at its own levels. By default Ray's C++ parts log fatal errors "
                                            "only and raylet messages are not relayed.")) -> None:
    """Options for every command (`selkd --verbose scan ...`)."""
    if verbose:
        import os

        from selkd_ray.distributed.runtime import RAY_LINES

        os.environ[RAY_LINES] = "1"


def distill_inputs(scan: "str | None", cache: "str | None") -> "str | None":
    """`distill`'s --scan (a scores.parquet) and --cache (a prediction cache folder) exist, else one line naming
    the one that does not, before any work; the cache, defaulting to the --scan folder's."""
    from pathlib import Path

    from selkd_ray.errors import SelkdError
    from selkd_ray.io.fs import Location

    if scan is not None and not Path(scan).is_file():
        raise SelkdError(f"--scan: {scan} is not a file; expected the scores.parquet a scan wrote")
    if cache is not None and not Location(cache).is_dir():
        raise SelkdError(f"--cache: {cache} is not a folder; expected a prediction cache a scan or distill wrote "
                         "(OUT/cache)")
    return cache or (str(Path(scan).parent / "cache") if scan else None)
