"""Image classifiers from timm, by timm name (the students and teachers of the ImageNet recipes).

``pretrained=True`` loads timm's weights from the Hugging Face hub and so needs
the network (or a filled HF cache); tests build them random-initialised.
"""

from zoo.registry import ARCHS


def _timm(name: str):
    def build(num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False):
        import timm

        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=input_shape[0])

    return build


ARCHS.register("resnet18")(_timm("resnet18"))
ARCHS.register("resnet50")(_timm("resnet50"))
ARCHS.register("mobilenetv3_large_100")(_timm("mobilenetv3_large_100"))
ARCHS.register("efficientnet_b0")(_timm("efficientnet_b0"))
