"""The model zoo. Importing the package registers every model."""

from models import ds_cnn, resnet8, seed  # noqa: F401  (registration side effects)
from models.registry import (
    create_model,
    list_models,
    model_description,
    model_options,
    register_model,
)

__all__ = ["create_model", "list_models", "model_description", "model_options", "register_model"]
