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

# MEAL V2's models with the exact timm tags of its weights (pretrained=True loads those weights).
# Teachers of the 224-px runs (senet154 81.38, resnet152_v1s 80.86 top-1 as measured by the
# MEAL V2 maintainer) and of the 380-px run:
ARCHS.register("senet154.gluon_in1k")(_timm("senet154.gluon_in1k"))
ARCHS.register("resnet152s.gluon_in1k")(_timm("resnet152s.gluon_in1k"))
ARCHS.register("tf_efficientnet_b4.ns_jft_in1k")(_timm("tf_efficientnet_b4.ns_jft_in1k"))
ARCHS.register("tf_efficientnet_b4.in1k")(_timm("tf_efficientnet_b4.in1k"))
# Students as the paper initialised them: resnet50_ram (~79.0 top-1 before distillation, not timm's
# stronger default resnet50 weights), torchvision's resnet18 (69.76), timm's TF-ported mobile nets.
ARCHS.register("resnet50.ram_in1k")(_timm("resnet50.ram_in1k"))
ARCHS.register("resnet18.tv_in1k")(_timm("resnet18.tv_in1k"))
ARCHS.register("tf_mobilenetv3_small_075.in1k")(_timm("tf_mobilenetv3_small_075.in1k"))
ARCHS.register("tf_mobilenetv3_small_100.in1k")(_timm("tf_mobilenetv3_small_100.in1k"))
ARCHS.register("tf_mobilenetv3_large_100.in1k")(_timm("tf_mobilenetv3_large_100.in1k"))
ARCHS.register("tf_efficientnet_b0.in1k")(_timm("tf_efficientnet_b0.in1k"))
