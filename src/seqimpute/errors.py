"""One exception type for every mistake a user can make; the CLI turns it into one line and exit code 2."""


class SeqImputeError(ValueError):
    """A bad input, file, option or run folder. The message says what is wrong and how to fix it."""
