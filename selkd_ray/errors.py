"""One exception type for input the user can fix: its message is a single line naming what was wrong."""


class SelkdError(Exception):
    """Bad input or environment; the CLI prints the message alone, with no traceback."""


def fail(where: str, problem: str) -> SelkdError:
    """Build an error naming the file or field (`where`) and what was expected."""
    return SelkdError(f"{where}: {problem}")


class UnreadableTable(SelkdError):
    """A Parquet file the tool wrote (or should have) that cannot be read: an output table is an error, a cache
    entry a miss."""
