"""Teacher and student builders, registered in ARCHS.

Every builder has the signature ``build(num_classes, input_shape, pretrained=False, **kwargs)``
and returns an ``nn.Module``: a classifier maps a batch of inputs to logits, a detector
(``zoo.archs.detr``) returns a ``DetrOutput``. ``kwargs`` are the arch's own settings from
``student.kwargs`` / ``teacher.kwargs`` in YAML (classifier builders take none). Use
``zoo.archs.create`` rather than calling builders directly: it also takes ``subclasses`` (S > 1: any classifier
arch built with S outputs per class and grouped back into classes, ``zoo.archs.subclass_head``).
"""

from zoo.registry import ARCHS


def create(name: str, num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False,
           subclasses: int = 1, **kwargs):
    try:
        return _create(name, num_classes, input_shape, pretrained, subclasses, **kwargs)
    except OSError as err:  # the one place every model is built: where a download it needs fails, say which
        from zoo.errors import ZooError, hub_unreachable

        if not hub_unreachable(err):
            raise
        role_switch = "kwargs.pretrained_backbone=false" if kwargs.get("pretrained_backbone") else "weights=FILE"
        raise ZooError(f"the pretrained weights of {name} are not in the local cache and the Hugging Face Hub cannot "
                       "be reached", "connect to the network once (they are cached in HF_HOME, ~/.cache/huggingface), "
                       "copy in a cache that has them, or do without them: "
                       f"teacher.{role_switch} or student.{role_switch}, for the model that names {name}") from err


def _create(name: str, num_classes: int, input_shape: tuple[int, ...], pretrained: bool, subclasses: int, **kwargs):
    build = ARCHS.get(name)
    if int(subclasses) == 1:
        return build(num_classes=num_classes, input_shape=tuple(input_shape), pretrained=pretrained, **kwargs)
    from zoo.errors import ConfigError

    if not num_classes or int(subclasses) < 1:
        raise ConfigError(f"subclasses={subclasses} needs a classifier with classes and S >= 1",
                          "give method.subclasses a positive integer, on a classification task")
    from zoo.archs.subclass_head import SubclassClassifier

    net = build(num_classes=num_classes * int(subclasses), input_shape=tuple(input_shape), pretrained=pretrained,
                **kwargs)
    return SubclassClassifier(net, num_classes, int(subclasses))


def arch_kwargs(role_cfg) -> dict:
    """``student.kwargs`` / ``teacher.kwargs`` as plain Python (empty when the config has none)."""
    from omegaconf import OmegaConf

    kwargs = role_cfg.get("kwargs") if role_cfg is not None else None
    return OmegaConf.to_container(kwargs, resolve=True) if kwargs is not None else {}


def student_arch_kwargs(cfg, datamodule) -> dict:
    """A run's student arch settings: ``student.kwargs``, the data's tokenizer for a text arch
    (``zoo.archs.text.with_data_tokenizer``) and what its method asks of the student's shape (LELP: S outputs per
    class), so that training and every rebuild of the finished run build the same module."""
    from zoo.archs.text import with_data_tokenizer
    from zoo.registry import METHODS

    kwargs = with_data_tokenizer(cfg.student.arch, arch_kwargs(cfg.student), datamodule, "student")
    return {**kwargs, **METHODS.get(cfg.method.name).student_kwargs(cfg.method)}


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model, input_shape: tuple[int, ...]) -> int | None:
    """Forward FLOPs for one sample (2 per multiply-add), by torch's own FlopCounterMode.

    None for models without a fixed input shape (text: ``input_shape`` is ()) and where the counter
    cannot follow the model (an op it cannot trace): a record then says "not counted" rather than a
    wrong number.
    """
    if not input_shape:
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    inputs = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
    try:
        # The counter's module tracker fails under no_grad on some models (HF's DETRs: "Expected gradient
        # function to be set"); the same forward with autograd on counts the same operations.
        for grad in (False, True):
            counter = FlopCounterMode(display=False)
            try:
                with torch.set_grad_enabled(grad), counter:
                    model(inputs)
                return int(counter.get_total_flops())
            except Exception as err:  # noqa: BLE001 - any failure of the counter means "not counted"
                failure = err
    finally:
        model.train(was_training)
    import logging

    logging.getLogger(__name__).warning("FLOPs of %s not counted: %s", type(model).__name__, failure)
    return None
