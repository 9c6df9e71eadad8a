"""One root error and one subclass per kind of failure, each carrying the process exit
code (docs/architecture.md, Contracts): 0 ok, 1 a check broke (budget, accuracy), 2 a
usage, config or input error (a full disk too), 3 a device unreachable or failing on its
side, 4 an internal error (a bug: anything not raised as one of these). They live on
the ground floor because every floor raises them.
"""

from __future__ import annotations

import errno
import os
import time
import traceback
from pathlib import Path


class PipelineError(Exception):
    """Root of every error the pipeline reports to a user. Message: what, expected, hint."""

    exit_code = 1


class ConfigError(PipelineError):
    exit_code = 2


class DataError(PipelineError):
    exit_code = 2


class ModelError(PipelineError):
    exit_code = 2


class CacheError(PipelineError):
    exit_code = 1


class StageError(PipelineError):
    exit_code = 1


class PruningError(PipelineError):
    exit_code = 2


class ExportError(PipelineError):
    """The model, its calibration data or the export settings cannot give an artifact."""

    exit_code = 2


class ArtifactError(PipelineError):
    """An artifact file is missing, truncated or not the format it claims."""

    exit_code = 2


class ValidationError(PipelineError):
    """An artifact lost more accuracy than `validate.max_accuracy_drop` allows."""

    exit_code = 1


class RuntimeNotFoundError(PipelineError):
    exit_code = 2


class BudgetError(PipelineError):
    exit_code = 1


class StorageError(PipelineError):
    """The disk filled up (ENOSPC) while the pipeline wrote its files."""

    exit_code = 2


INTERNAL_ERROR_EXIT = 4  # anything that is not a PipelineError: a bug, logged with its traceback


def as_pipeline_error(error: BaseException) -> PipelineError | None:
    """The named error for an exception from outside the pipeline's own, when one fits."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" writing {error.filename}" if error.filename else ""
        return StorageError(f"no space left on the device{where} (hint: free some space, or "
                            "point --build-dir / --dist-dir at a larger disk)")
    return None


def write_traceback(error: BaseException, folder: Path) -> Path:
    """The traceback of an internal error in `folder/internal-error-<time>-<pid>.log`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = (folder / f"internal-error-{stamp}-{os.getpid()}.log").resolve()
    path.write_text("".join(traceback.format_exception(error)), encoding="utf-8")
    return path
