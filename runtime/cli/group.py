"""The ``wtm`` command group: every way a command can go wrong ends in one line on stderr.

Usage errors (an unknown option, a bad value) read ``error: wtm run: No such option:
--bogus (see wtm run --help)`` instead of click's usage block; an exception nothing
expected is an *internal error* (exit 70, a bug in wtm), shown as one line unless
``WTM_DEBUG`` is set, when it propagates with its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from runtime.cli.output import fail

EXIT_INTERNAL_ERROR = 70
"""EX_SOFTWARE of sysexits.h: not 2, so a bug is never mistaken for bad input."""
EXIT_INTERRUPTED = 130


class WtmGroup(click.Group):
    """A click group whose :meth:`main` applies the one-line error policy above."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a group without a command: its help, as click shows it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "wtm"
            fail(f"{where}: {exc.format_message().rstrip('.')} (see {where} --help)", exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            fail("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            if os.environ.get("WTM_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} (a bug in wtm: rerun with "
                "WTM_DEBUG=1 for the traceback and report it)",
                EXIT_INTERNAL_ERROR,
            )
        if isinstance(code, int) and code:
            sys.exit(code)
        return code
