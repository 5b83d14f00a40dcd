"""The errors every layer raises (kept free of heavy imports, so the CLI starts fast)."""

from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class DataError(Exception):
    """A sample's data cannot be used (unreadable image, path outside the dataset root, ...), or a
    benchmark's data as a whole (no parquet, missing columns, a failed download).

    The run records a sample's error with this message and goes on; a whole-data error stops the
    run before any engine starts."""


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""


PROGRAMMING_ERRORS = (NameError, ImportError)  # wrong whatever the input: never a sample's fault


def is_our_bug(exc: BaseException) -> bool:
    """Whether `exc` is a programming error of pr-eval's own code: a NameError or ImportError
    whose innermost frame lies in the pr_eval package. The catch-alls around a sample's data and
    a judgement turn whatever a decoder, a reply or odd data raises into that item's error (a
    TypeError on a hostile reply included: the run goes on); a name that does not exist in our
    code would lose every sample as if the data were bad, so it stops the run instead."""
    if not isinstance(exc, PROGRAMMING_ERRORS):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(PACKAGE_DIR + os.sep)
