"""ResNets for ImageNet (He et al., 2016; wide variants: Zagoruyko & Komodakis, 2016), as
HE trains them with FreeAT (Pang et al., NeurIPS 2020, Table 4): torchvision's ``ResNet``
with Bottleneck blocks, the network ``torchvision.models.resnet50/152`` and
``wide_resnet50_2/101_2`` build (aliases ``imagenet_resnet50``, ``imagenet_resnet152``,
``imagenet_wide_resnet50_2``, ``imagenet_wide_resnet101_2``; the CIFAR ``resnet`` family
keeps the names resnet18/34/50/101). AT_HE's ImageNet code uses a copy of torchvision's
resnet.py with the HE head on ``fc``.

Arguments: ``layers`` (blocks per stage; ResNet-50: [3, 4, 6, 3]), ``width_per_group``
(64; 128 for the wide variants), ``width`` (64: the stem's channels; the stages use
width·[1, 2, 4, 8] planes; other values only at reduced scales), ``num_classes`` (1000),
``in_channels`` (3), ``mean``/``std`` (ImageNet's, applied inside the model as AT_HE's
FreeAT code applies them after the perturbation), ``head`` (HE's head, models/base.py).
At width 64 the parameters are torchvision's, name for name, so torchvision checkpoints
load as they are. Input: 224×224 images in [0, 1].
"""
from __future__ import annotations

from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from . import MODELS
from .base import Normalize, classifier

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@MODELS.register("imagenet_resnet")
class ImageNetResNet(ResNet):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, layers=(3, 4, 6, 3),
                 width_per_group: int = 64, width: int = 64, mean=IMAGENET_MEAN, std=IMAGENET_STD, head=None):
        super().__init__(Bottleneck, list(layers), num_classes=num_classes, width_per_group=width_per_group)
        if width != 64 or in_channels != 3:   # torchvision fixes 64 stem channels and RGB input
            self.inplanes, self.dilation = width, 1
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.layer1 = self._make_layer(Bottleneck, width, layers[0])
            self.layer2 = self._make_layer(Bottleneck, 2 * width, layers[1], stride=2)
            self.layer3 = self._make_layer(Bottleneck, 4 * width, layers[2], stride=2)
            self.layer4 = self._make_layer(Bottleneck, 8 * width, layers[3], stride=2)
            for m in self.modules():   # torchvision's initialisation
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
        self.fc = classifier(8 * width * Bottleneck.expansion, num_classes, head)
        if in_channels != 3 and (mean, std) == (IMAGENET_MEAN, IMAGENET_STD):
            mean = std = None   # ImageNet's statistics are for RGB inputs
        self.normalize = Normalize(mean, std, in_channels)

    def forward(self, x):
        return self._forward_impl(self.normalize(x))
