"""The U-Net family: UNet (Ronneberger et al. 2015), UNetPlusPlus (Zhou et al. 2018), UNet3Plus (Huang et
al. 2020) and EncoderUNet (a ResNet, MobileNetV2 or EfficientNet encoder with SMP's U-Net decoder)."""
from .sizes import valid_input_sizes, nearest_legal, unet_trace
from .unet import UNet

__all__ = ["UNet", "valid_input_sizes", "nearest_legal", "unet_trace"]
from .unetpp import UNetPlusPlus  # noqa: E402
from .unet3plus import UNet3Plus, apply_cgm  # noqa: E402

__all__ += ["UNetPlusPlus", "UNet3Plus", "apply_cgm"]
from .encoder_unet import EncoderUNet  # noqa: E402

__all__ += ["EncoderUNet"]
from .pretrained import load_encoder_weights  # noqa: E402

__all__ += ["load_encoder_weights"]
