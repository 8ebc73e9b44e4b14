"""Errors meant for the user as they are: runners print the message, not a traceback."""


class DataValidationError(RuntimeError):
    """The data breaks the schema or the spec, or a data file cannot be read. The message names
    the file (and line), the column and the problem."""
