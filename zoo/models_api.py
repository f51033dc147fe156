"""Build a model by name, timm-style: ``create_model("resnet50.mealv2_in1k", pretrained=True)``.

A name is either a model card (``<arch>.<tag>`` from any source of ``zoo.catalog``: the built-in models/,
$ZOO_HOME/models/, a mirror; or ``hf-hub:org/repo[@revision]``), which fixes the arch, the number of classes and
the input shape and says where the weights live, or a plain ARCHS key (``mlp.tiny``), for which the caller
gives ``num_classes`` and ``input_shape``. Cards win when both exist.

With a card, ``pretrained=True`` fetches the weights through ``zoo.catalog.fetch`` (cached, verified) and
loads them strictly (``zoo.weights`` unwraps keys saved from ``nn.DataParallel``, as in MEAL-V2's
released .pth files). With a plain arch, ``pretrained`` goes to the builder
(timm archs then load timm's own weights; the small nets have none and say so).
"""

from zoo import catalog
from zoo.cards import ModelCard
from zoo.errors import ConfigError, UnknownNameError, did_you_mean


def create_model(name: str, pretrained: bool = False, **kwargs):
    """An ``nn.Module`` for a card or arch name. kwargs: num_classes, input_shape, progress (download bar)."""
    from zoo.archs import create

    unknown = sorted(set(kwargs) - {"num_classes", "input_shape", "progress"})
    if unknown:
        raise ConfigError(f"create_model got an unexpected argument '{unknown[0]}'",
                          "it takes name, pretrained, num_classes, input_shape and progress")
    card = _card_or_none(name)
    if card is None:
        if "num_classes" not in kwargs or "input_shape" not in kwargs:
            raise ConfigError(f"'{name}' is an arch, not a model card: give num_classes= and input_shape=",
                              f"or use a card: {', '.join(_cards_of(name)) or 'none exists for this arch yet'}")
        return create(name, kwargs["num_classes"], tuple(kwargs["input_shape"]), pretrained=pretrained)
    num_classes = kwargs.get("num_classes", card.num_classes)
    if pretrained and num_classes != card.num_classes:
        raise ConfigError(f"'{name}' weights have {card.num_classes} classes, not {num_classes}",
                          "drop num_classes=, or build with pretrained=False and replace the head yourself")
    # The builder never loads weights of its own here: the card's weights are the pretrained ones.
    model = create(card.arch, num_classes, tuple(kwargs.get("input_shape", card.input.shape)))
    if pretrained:
        from zoo.weights import load_weights

        load_weights(model, catalog.fetch(name, card, progress=kwargs.get("progress", True)))
    return model


def _card_or_none(name: str) -> ModelCard | None:
    """The card called ``name``; None when ``name`` is a registered arch instead; an error listing both kinds."""
    from zoo.registry import ARCHS

    card = catalog.find(name)
    if card is not None:
        return card
    try:
        ARCHS.get(name)
    except UnknownNameError:
        if ARCHS.family_of(name) is not None:
            raise  # a family's own message says what its names look like
        raise UnknownNameError(f"unknown model '{name}' (neither a model card nor an arch)",
                               did_you_mean(name, catalog.card_names() + ARCHS.names() + ARCHS.patterns(),
                                            "models and archs")) from None
    return None


def _cards_of(arch: str) -> list[str]:
    return [n for n in catalog.card_names() if n.startswith(f"{arch}.")]
