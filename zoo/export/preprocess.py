"""preprocess.json: what an exported classifier expects as input, and what its outputs mean.

The zoo's data modules normalise inside the module (digits / 16; Fashion-MNIST
(x / 255 - mean) / std; ImageNet folders ToTensor + Normalize), so a deployed
model must be told the same recipe. The spec says, for raw inputs in NCHW:

    model_input = ((raw / pixel_max) - mean[c]) / std[c]     (pixel_max, mean, std may be null: skipped)

plus the input shape, the class order (index -> name) and, for image folders,
the resize/crop the caller must do first (no image decoding happens at deploy
time here). The runtime (``zoo.export.runtime``) applies it with numpy alone.

A data module may describe itself with an ``export_preprocess`` dict (keys
pixel_max, mean, std, resize, raw_input, classes); otherwise the entries of
``_RECIPES`` below are used, and an unknown dataset is an error rather than a
guess.
"""

from typing import Any

from zoo.export.errors import ExportError

SCHEMA = 1
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _digits(datamodule) -> dict[str, Any]:
    return {"pixel_max": 16.0, "mean": None, "std": None, "resize": None,
            "raw_input": "8x8 grey digits with pixel values 0..16 (sklearn load_digits().images), NCHW",
            "classes": [str(i) for i in range(10)]}


def _fashion_mnist(datamodule) -> dict[str, Any]:
    from zoo.data.fashion_mnist import MEAN, STD

    return {"pixel_max": 255.0, "mean": [MEAN], "std": [STD], "resize": None,
            "raw_input": "28x28 grey images with pixel values 0..255 (the idx files' bytes), NCHW",
            "classes": FASHION_MNIST_CLASSES if datamodule.num_classes == 10 else
            [" / ".join(FASHION_MNIST_CLASSES[parity::2]) for parity in (0, 1)]}  # data.labels=parity


def _imagefolder(datamodule) -> dict[str, Any]:
    from zoo.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD

    size = datamodule.input_shape[-1]
    return {"pixel_max": 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "resize": {"shorter_side": int(size * 256 / 224), "center_crop": size},
            "raw_input": f"RGB images with pixel values 0..255, resized (shorter side {int(size * 256 / 224)}) "
                         f"and center-cropped to {size}x{size} by the caller, NCHW",
            "classes": list(datamodule.splits["train"].folder.classes)}


_RECIPES = {"digits": _digits, "fashion_mnist": _fashion_mnist, "imagefolder": _imagefolder}


def spec_for_datamodule(datamodule, input_dtype: str) -> dict[str, Any]:
    """The preprocess spec of a classifier trained on ``datamodule``."""
    recipe = datamodule.export_preprocess
    if recipe is None:
        if datamodule.name not in _RECIPES:
            raise ExportError(f"no input recipe for dataset '{datamodule.name}': preprocess.json cannot be written",
                              "give the data module an export_preprocess dict, or add it to zoo/export/preprocess.py")
        recipe = _RECIPES[datamodule.name](datamodule)
    return make_spec(datamodule.input_shape, datamodule.num_classes, input_dtype, **recipe)


def make_spec(input_shape, num_classes: int, input_dtype: str, *, pixel_max: float | None = None,
              mean: list[float] | None = None, std: list[float] | None = None, resize: dict | None = None,
              raw_input: str = "inputs already normalised as the model expects them, NCHW",
              classes: list[str] | None = None) -> dict[str, Any]:
    classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
    if len(classes) != num_classes:
        raise ExportError(f"{len(classes)} class names for a {num_classes}-class model")
    if (mean is None) != (std is None) or (mean is not None and len(mean) not in (1, input_shape[0])):
        raise ExportError(f"mean {mean} and std {std} do not fit {input_shape[0]} input channel(s)")
    return {"schema": SCHEMA, "kind": "image_classifier",
            "input": {"name": "inputs", "shape": [int(d) for d in input_shape], "layout": "NCHW",
                      "dtype": input_dtype},
            "output": {"name": "logits", "shape": ["batch", num_classes], "dtype": input_dtype},
            "pixel_max": pixel_max, "mean": mean, "std": std, "resize": resize, "raw_input": raw_input,
            "num_classes": num_classes, "classes": classes}
