"""Layers with explicit forward/backward, PyTorch names and semantics."""
from .module import Module, Parameter, Meta, set_checks, check_array
from .op import Op
from .layers import (Conv2d, ConvTranspose2d, MaxPool2d, AdaptiveMaxPool2d, AdaptiveAvgPool2d, Upsample, BatchNorm2d,
                     ReLU, ReLU6, SiLU, Flatten, Sigmoid, Dropout, Dropout2d, StochasticDepth, ZeroPad2d, Identity,
                     Sequential, ModuleList, CropConcat, CenterCrop, Concat, Add, Mul)

__all__ = ["Module", "Parameter", "Meta", "set_checks", "check_array", "Conv2d", "ConvTranspose2d", "MaxPool2d",
           "AdaptiveMaxPool2d", "Upsample", "BatchNorm2d", "ReLU", "Sigmoid", "Dropout", "Dropout2d", "Identity",
           "Sequential", "CropConcat", "CenterCrop", "Concat", "Add", "Mul", "Flatten", "ReLU6", "SiLU",
           "StochasticDepth", "AdaptiveAvgPool2d", "ZeroPad2d", "ModuleList", "Op"]
