"""Errors a user can act on: the CLI prints their message as one line, without a traceback."""


class UserError(Exception):
    """Something the user can fix (a path, a flag, a setting, an unreachable service)."""


class UsageError(UserError):
    """A command asked for something it cannot do as given (a flag, a path, a range): exit code 2."""
