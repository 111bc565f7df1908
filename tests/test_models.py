import pytest
import torch

from pipeline_lib.models import FAMILIES, build_model


@pytest.mark.parametrize("architecture", sorted(FAMILIES))
@pytest.mark.parametrize("channels, size", [(1, 8), (1, 28), (3, 32)])
def test_every_family_on_every_input_size(architecture, channels, size):
    for width in (0.5, 1.0, 2.0):
        model = build_model(architecture, in_channels=channels, image_size=size, num_classes=10, width=width,
                            dropout=0.25)
        out = model(torch.randn(3, channels, size, size))
        assert out.shape == (3, 10)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("architecture", sorted(FAMILIES))
def test_width_scales_parameter_count(architecture):
    def count(w):
        m = build_model(architecture, in_channels=1, image_size=28, num_classes=10, width=w)
        return sum(p.numel() for p in m.parameters())

    assert count(0.5) < count(1.0) < count(2.0)


def test_resnet_has_projection_and_identity_shortcuts():
    model = build_model("resnet", in_channels=3, image_size=32, num_classes=10, depth=2)
    shortcuts = [len(block.shortcut) for block in model.blocks]
    assert 0 in shortcuts and 2 in shortcuts  # identity (empty) and conv+bn projection


def test_unknown_family():
    with pytest.raises(ValueError, match="known"):
        build_model("mlp", in_channels=1, image_size=8, num_classes=10)
