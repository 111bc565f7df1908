"""CIFAR-style ResNet: a 3x3 stem, three stages of basic blocks (16/32/64 channels x width),
BatchNorm, identity shortcuts inside a stage and 1x1 projection shortcuts where the shape changes."""
import torch
from torch import nn

from ._common import scaled
from .dropout import Dropout


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
                 dropout: float = 0.0, depth: int = 1):
        super().__init__()
        stages = [scaled(n, width) for n in (16, 32, 64)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stages[0], 3, padding=1, bias=False), nn.BatchNorm2d(stages[0]), nn.ReLU()
        )
        blocks, channels = [], stages[0]
        for i, out in enumerate(stages):
            for j in range(depth):
                blocks.append(BasicBlock(channels, out, stride=2 if (i > 0 and j == 0) else 1))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), Dropout(dropout), nn.Linear(channels, num_classes)
        )

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def resnet(in_channels: int, image_size: int, num_classes: int, width: float = 1.0,
           dropout: float = 0.0, depth: int = 1) -> ResNet:
    """ResNet with `depth` blocks per stage: depth=1 is ResNet-8, depth=3 is ResNet-20."""
    return ResNet(in_channels, image_size, num_classes, width, dropout, depth)
