"""The one error type of the results tools: a message for the user, no traceback."""


class ResultsError(Exception):
    """Input the aggregator cannot use (missing folder, no finished run, ...)."""
