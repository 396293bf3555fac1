"""The exception of the data readers, in a module of its own so that ``data`` (which reads packed
files) and ``packed`` (whose errors are data errors) need not import each other. Catch it as
``data.DataError``."""

__all__ = ["DataError"]


class DataError(ValueError):
    """A dataset could not be found or read; the message names the file and the problem."""
