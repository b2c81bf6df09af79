"""Errors a user can act on. Each message names what is wrong and how to fix it."""


class BenchError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class SpecError(BenchError):
    """A paper spec, scale file or workflow config is malformed or names something unknown."""


class MissingDataError(BenchError):
    """A dataset (or external data file) the requested targets need is not on disk."""


class UnknownNameError(SpecError):
    """A registry lookup for a name that is not registered."""


class CorruptFileError(BenchError):
    """A file the suite wrote (or reads) is truncated or corrupt: the message names it and says
    what to do (usually: remove it and rerun)."""


class DiskFullError(BenchError):
    """No space left on the device while writing a file (nothing half-written is left)."""


class LockedError(BenchError):
    """Another live process is writing the same folder (or output)."""
