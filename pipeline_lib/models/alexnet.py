"""AlexNet-style network for small images: five 3x3 convolutions, three pools, three linear layers."""
from torch import nn

from ._common import pooled_size, scaled
from .dropout import Dropout


class AlexNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        c = [scaled(n, width) for n in (48, 128, 192, 192, 128)]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c[0], c[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = pooled_size(image_size, 3)
        hidden = scaled(256, width)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            Dropout(dropout), nn.Linear(c[4] * side * side, hidden), nn.ReLU(),
            Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def alexnet(in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
            dropout: float = 0.0, depth: int = 1) -> AlexNet:
    return AlexNet(in_channels, image_size, num_classes, width, dropout)
