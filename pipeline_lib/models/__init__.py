"""Model families, one file each, every factory taking a width multiplier (torchvision style)."""
from torch import nn

from .alexnet import alexnet
from .lenet import lenet
from .resnet import resnet
from .vgg import vgg

FAMILIES = {"lenet": lenet, "vgg": vgg, "alexnet": alexnet, "resnet": resnet}


def build_model(architecture: str, *, in_channels: int, image_size: int, num_classes: int,
                width: float = 1.0, dropout: float = 0.0, depth: int = 1) -> nn.Module:
    """Instantiate a family by name; raises ValueError naming the known families."""
    try:
        factory = FAMILIES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(FAMILIES)}") from None
    return factory(in_channels, image_size, num_classes, width=width, dropout=dropout, depth=depth)


__all__ = ["FAMILIES", "build_model", "lenet", "vgg", "alexnet", "resnet"]
