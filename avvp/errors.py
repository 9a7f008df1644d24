"""User-facing errors: each message names the file, line, video or field and what was expected."""


class AvvpError(Exception):
    """An error in the user's input or request; the CLI prints it in one line and exits non-zero."""


class AnnotationError(AvvpError):
    """A malformed LLP annotation file."""


class StoreError(AvvpError):
    """A feature store or label file that does not match its schema."""


class ConfigError(AvvpError):
    """An invalid option or configuration value."""
