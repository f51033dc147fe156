"""zoo: a knowledge-distillation model zoo for vision and retrieval.

Importing ``zoo`` is cheap on purpose: torch, Lightning and the model libraries
are imported by the modules that need them, so ``zoo --help`` and ``zoo list``
answer at once.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # zoo.create_model without importing torch at `import zoo`.
    if name == "create_model":
        from zoo.models_api import create_model

        return create_model
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
