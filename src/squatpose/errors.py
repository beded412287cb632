"""Errors a user can cause. Each carries a one-line message naming the file and the record."""


class SquatposeError(Exception):
    """Base class: the CLI and the stages print its message, not a traceback."""


class AnnotationError(SquatposeError):
    """An annotation file is not valid COCO keypoints."""


class ImageError(SquatposeError):
    """An image is missing or cannot be decoded."""


class DownloadError(SquatposeError):
    """A download failed or an archive is not what it should be."""


class ConfigError(SquatposeError):
    """params.yaml is missing a key or has an unknown one."""


class ShardError(SquatposeError):
    """A shard set is missing, incomplete or does not match what is asked of it."""


class Interrupted(SquatposeError):
    """The user stopped a run (Ctrl-C); the message says what was kept. Exit code 130."""
