"""One root error and one subclass per kind of failure, each carrying the process exit
code (docs/architecture.md, Contracts): 0 ok, 1 a check broke (budget, accuracy), 2 a
usage, config or input error, 3 a device unreachable or failing on its side. They live on
the ground floor because every floor raises them.
"""


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
