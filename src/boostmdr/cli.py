"""The one entry point every ``python -m boostmdr.<step>`` goes through, so that a failing rule's log holds the error.

Snakemake tells the user to "check log file(s) for error details", and the SLURM profile shows a failed job's
log; an exception that only reaches the terminal leaves a log ending with INFO lines. :func:`run`:

* sets up logging to the step's own ``--log``/``--log-file`` before the step runs (the step sets it up again
  with the same file when it parses its arguments), so even an error raised while checking arguments is logged;
* logs a known input error (a malformed file, a bad setting, a missing file or package: :data:`INPUT_ERRORS`)
  at ERROR with its message alone, which names the file and line or the setting;
* logs anything else at ERROR with its traceback (a bug: the traceback is what a report needs);
* exits non-zero in both cases (1), and with the step's own status otherwise; argparse's usage errors keep
  their status 2 and their message on stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from boostmdr.formats import FormatError

log = logging.getLogger("boostmdr")

INPUT_ERRORS: tuple[type[BaseException], ...] = (FormatError, ValueError, OSError)
"""Errors that report bad input with a message that says what and where: ``ValueError`` for every setting
check of the library (template and config errors subclass it), ``OSError`` for a file or a model that cannot
be read or loaded (missing, unreadable, not in the offline cache), ``FormatError`` for a malformed file."""


def known_errors() -> tuple[type[BaseException], ...]:
    """:data:`INPUT_ERRORS` plus the LLM backends' 'not installed' and 'no answer' errors (imported lazily)."""
    from boostmdr.llm.base import BackendError, BackendUnavailable

    return (*INPUT_ERRORS, BackendUnavailable, BackendError)


def log_argument(argv: Sequence[str]) -> str | None:
    """The value of ``--log``/``--log-file`` in ``argv`` (``--log X`` or ``--log=X``), if any."""
    for i, arg in enumerate(argv):
        for flag in ("--log", "--log-file"):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def run(main: Callable[..., int | None], argv: Sequence[str] | None = None) -> None:
    """Run a step's ``main(argv)`` and exit with its status; errors are logged as the module doc says."""
    from boostmdr.utils import setup_logging

    import os

    args = list(sys.argv[1:] if argv is None else argv)
    log_file = log_argument(args)
    if log_file and os.environ.get("RANK", "0") != "0":  # torchrun: each process logs to its own file
        log_file = f"{log_file}.rank{os.environ['RANK']}"
    if log_file and "--help" not in args and "-h" not in args:
        setup_logging(log_file)
    try:
        status = main(args)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        log.error("interrupted")
        sys.exit(130)
    except known_errors() as err:
        log.error("%s", err)
        sys.exit(1)
    except Exception:  # noqa: BLE001 - a bug: log it with its traceback where the rule's log shows it
        log.exception("failed with an unexpected error (a bug; please report it with this log)")
        sys.exit(1)
    sys.exit(status or 0)
