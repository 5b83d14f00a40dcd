"""The errors every layer raises (kept free of heavy imports, so the CLI starts fast)."""


class DataError(Exception):
    """A sample's data cannot be used (unreadable image, path outside the dataset root, ...), or a
    benchmark's data as a whole (no parquet, missing columns, a failed download).

    The run records a sample's error with this message and goes on; a whole-data error stops the
    run before any engine starts."""


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""
