"""Intermediate features addressed by module path, captured with forward hooks.

``FeatureHooks(model, ["features.2", "head"])`` keeps the latest output of each
named submodule in ``.outputs`` after every forward, the torchdistill way: no
model code changes to expose a feature.
"""

from torch import nn

from zoo.errors import ConfigError, did_you_mean


class FeatureHooks:
    def __init__(self, model: nn.Module, paths: list[str]):
        self.outputs: dict[str, object] = {}
        self._handles = []
        names = dict(model.named_modules())
        for path in paths:
            if path not in names:
                raise ConfigError(f"no module '{path}' in {type(model).__name__}",
                                  did_you_mean(path, [n for n in names if n], "module paths"))
            self._handles.append(names[path].register_forward_hook(self._keeper(path)))

    def _keeper(self, path: str):
        def keep(module, inputs, output):
            self.outputs[path] = output

        return keep

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
