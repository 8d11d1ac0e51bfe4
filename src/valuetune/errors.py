"""Errors a user can act on.

Every exception raised for bad input derives from `ValuetuneError`; the CLI prints its
message to stderr and exits non-zero, never a traceback.
"""


class ValuetuneError(Exception):
    """Base class: the message says what was wrong and what to do."""

    exit_code = 1


class SchemaError(ValuetuneError):
    """A schema, item bank or profile document is corrupt, unknown or newer than supported."""


class InvalidAnswerError(ValuetuneError):
    """An answer does not fit its item: unknown item id or a value out of range."""


class NotFoundError(ValuetuneError):
    """A named thing (persona, respondent, profile) does not exist."""


class StorageError(ValuetuneError):
    """The database cannot be reached or is not at the expected schema revision."""
