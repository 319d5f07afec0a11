"""Errors of the runner, in two tiers.

Every error the runner raises on purpose derives from :class:`TabularError`::

    TabularError                 exit 1  something failed that is not the user's input
    ├── UserInputError           exit 2  bad manifest, bad data, bad option: permanent
    ├── GateFailedError          exit 3  the release gate refused the synthetic data
    └── EngineError              exit 4  a generator engine could not be set up or crashed

The CLI turns these into one line on stderr and the exit code above; anything else is a
bug and keeps its traceback. Exit codes 2 and 3 are *permanent*: the operator's
``podFailurePolicy`` fails the job at once on them instead of retrying.
"""

from __future__ import annotations


class TabularError(Exception):
    """Base of every deliberate runner error."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserInputError(TabularError):
    """The user's manifest, data or options are wrong; retrying will not help.

    Args:
        field: Dotted path of the offending field (``spec.privacy.epsilon``) or the thing
            at fault (``source``, ``--out``).
        problem: What is wrong, in a few words.
        hint: How to fix it.
    """

    exit_code = 2

    def __init__(self, field: str, problem: str, hint: str = "") -> None:
        self.field = field
        self.problem = problem
        self.hint = hint
        text = f"{field}: {problem}" if field else problem
        if hint:
            text = f"{text} — {hint}"
        super().__init__(text)


class GateFailedError(TabularError):
    """The synthetic data did not pass ``spec.qualityGate``; the report is still written."""

    exit_code = 3


class EngineError(TabularError):
    """A generator engine failed to install, start or run."""

    exit_code = 4


PERMANENT_EXIT_CODES = (UserInputError.exit_code, GateFailedError.exit_code)
"""Exit codes that mean "do not retry" (used by the operator's podFailurePolicy)."""
