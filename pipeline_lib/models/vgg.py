"""VGG-style network for small images: stacks of 3x3 convolutions, max-pooling, two linear layers."""
from torch import nn

from ._common import pooled_size, scaled
from .dropout import Dropout

# Channels per convolution; "M" is a 2x2 max-pool. Three pools keep 8x8 inputs valid.
_CONFIG = [32, "M", 64, "M", 128, 128, "M"]


class VGG(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        layers, channels = [], in_channels
        for item in _CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                out = scaled(item, width)
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        side = pooled_size(image_size, _CONFIG.count("M"))
        hidden = scaled(256, width)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            Dropout(dropout), nn.Linear(channels * side * side, hidden), nn.ReLU(),
            Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def vgg(in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
        dropout: float = 0.0, depth: int = 1) -> VGG:
    return VGG(in_channels, image_size, num_classes, width, dropout)
