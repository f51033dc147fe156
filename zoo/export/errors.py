"""Errors of the export path (torch-free, so the runtime can raise them too)."""

from zoo.errors import ZooError


class ExportError(ZooError):
    """The model could not be exported (the exporter itself failed)."""


class ExportCheckError(ExportError):
    """An exported model failed a check: ONNX checker, opset, inputs/outputs, logits parity or the task metric."""
