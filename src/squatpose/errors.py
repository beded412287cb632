"""Errors a user can cause, and how every entry point reports them. Each carries a one-line
message naming the file and the record."""

import logging
import sys
from collections.abc import Callable
from typing import Any


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


def guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` with plain logging; a `SquatposeError` becomes one line on stderr and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return fn(*args, **kwargs)
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        sys.exit(130)
    except SquatposeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; run again to resume", file=sys.stderr)
        sys.exit(130)
