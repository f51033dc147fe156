"""What every exporter checks first in a written ONNX file: ``onnx.checker`` (full), then its facts.

    proto = checked_graph(path)                      # ExportCheckError (one line) if the checker rejects it
    inputs, outputs = graph_io(proto)                # value infos, initializers left out of the inputs
    facts = graph_facts(proto)                       # opset, IR version, producer, node count, op types

Each exporter then checks what its own runtime relies on (IO names, dtypes, dynamic axes) against these.
"""

from pathlib import Path
from typing import Any

from zoo.export.errors import ExportCheckError


def checked_graph(path: Path):
    """The ONNX model at ``path``, after ``onnx.checker``'s full check."""
    import onnx

    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportCheckError(f"onnx.checker rejects the exported model: {str(err).strip().splitlines()[0]}") from err
    return proto


def graph_io(proto) -> tuple[list, list]:
    """The graph's real inputs (initializers are not inputs a caller feeds) and its outputs, as value infos."""
    initializers = {i.name for i in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in initializers], list(proto.graph.output)


def graph_facts(proto) -> dict[str, Any]:
    """The facts export.json records about a graph; ``opset`` is the default domain's (None if it has none)."""
    return {"opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
            "ir_version": proto.ir_version, "producer": f"{proto.producer_name} {proto.producer_version}",
            "nodes": len(proto.graph.node), "op_types": sorted({n.op_type for n in proto.graph.node})}
