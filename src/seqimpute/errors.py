"""One exception type for every mistake a user can make; the CLI turns it into one line and exit code 2."""


class SeqImputeError(ValueError):
    """A bad input, file, option or run folder. The message says what is wrong and how to fix it."""


def require_whole(name: str, v, lo: int = 1, hi: int | None = None, none_ok: bool = False, types=int) -> None:
    """Refuse ``v`` unless it is a whole number (an instance of ``types``, never a bool) in [lo, hi]."""
    if v is None and none_ok:
        return
    if isinstance(v, bool) or not isinstance(v, types) or v < lo or (hi is not None and v > hi):
        top = f" and at most {hi:,}" if hi is not None else ""
        raise SeqImputeError(f"{name} must be a whole number of at least {lo}{top}, got {v!r}.")
