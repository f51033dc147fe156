"""zoo: a knowledge-distillation model zoo for vision and retrieval.

Importing ``zoo`` is cheap on purpose: torch, Lightning and the model libraries
are imported by the modules that need them, so ``zoo --help`` and ``zoo list``
answer at once.
"""

__version__ = "0.1.0"
