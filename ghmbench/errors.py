"""The errors a bad config or a bad dataset raises: one line naming the key (or the file) and
what is allowed; the command line prints it and exits with status 2. They live here, below every
other module, so that whoever raises them imports nothing else."""


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key and what is allowed."""


class DatasetError(ConfigError):
    """Invalid dataset content; one line naming the file (and annotation) and what is allowed."""
