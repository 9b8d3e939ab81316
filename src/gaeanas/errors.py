"""The library's exception types: one base class, so the CLI can report any of them cleanly."""


class GaeanasError(Exception):
    """Base class for every error gaeanas raises on bad input."""


class DataError(GaeanasError):
    """A dataset path, format or image is missing, malformed or inconsistent."""


class GenotypeError(GaeanasError, ValueError):
    """A genotype or architecture string is malformed."""


class BenchmarkError(GaeanasError):
    """A benchmark table is malformed, or a query is not in it."""


class ConfigError(GaeanasError, ValueError):
    """A configuration value or name is unknown or out of range."""


class ResourceError(GaeanasError):
    """A dataset or model would need more memory than the machine (or device) has available."""


class DivergenceError(GaeanasError):
    """A run produced a non-finite loss or weight; it stops with its last good checkpoint kept."""


class RunDirError(GaeanasError):
    """A run directory is in use, damaged, or belongs to another run."""
