"""Typed errors: a `PipelineError` is the user's to fix (exit 2, one line); anything else is a bug."""


class PipelineError(Exception):
    """A problem the user can act on: bad input, missing artifact, unreachable server."""


class ConfigError(PipelineError):
    """A configuration value is missing, unknown or inconsistent."""


class DataError(PipelineError):
    """Input data cannot be read or fetched."""


class ArtifactError(PipelineError):
    """A model artifact is missing or does not match its spec."""


class ServerError(PipelineError):
    """Triton cannot be launched or reached."""


class HostError(PipelineError):
    """This host lacks what the command needs (an NVIDIA GPU, TensorRT, a Docker engine)."""
