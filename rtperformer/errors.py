"""The one error type the command line turns into a single stderr line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (file, flag, config, port): reported as one line, exit code 2."""
