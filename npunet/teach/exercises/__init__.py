"""The exercises, one module each: its reference (from npunet's reference ops), cases and hints."""
from . import batchnorm, bilinear, conv2d, crop_concat, dice, maxpool, unet3p_stage, unetpp_node, upconv

EXERCISES = {m.EXERCISE.name: m.EXERCISE for m in (conv2d, maxpool, upconv, bilinear, batchnorm, crop_concat, dice,
                                                  unetpp_node, unet3p_stage)}
