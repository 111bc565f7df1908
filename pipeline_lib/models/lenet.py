"""LeNet-5-style network: two 5x5 convolutions with max-pooling, three linear layers."""
from torch import nn

from ._common import pooled_size, scaled
from .dropout import Dropout


class LeNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        c1, c2 = scaled(6, width), scaled(16, width)
        f1, f2 = scaled(120, width), scaled(84, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = pooled_size(image_size, 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            Dropout(dropout), nn.Linear(c2 * side * side, f1), nn.ReLU(),
            Dropout(dropout), nn.Linear(f1, f2), nn.ReLU(),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def lenet(in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
          dropout: float = 0.0, depth: int = 1) -> LeNet:
    return LeNet(in_channels, image_size, num_classes, width, dropout)
