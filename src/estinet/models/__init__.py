"""The ESTINet model family: :func:`build_model` turns a :class:`~estinet.config.ModelConfig` into a network."""

from __future__ import annotations

from torch import nn

from estinet.config import ModelConfig, preset_config


def build_model(config: ModelConfig) -> nn.Module:
    """Build the network a config describes.

    Args:
        config: the architecture (``config.variant`` selects the ablation variant or ``official``).

    Returns:
        An :class:`~estinet.models.estinet.ESTINet` or, for ``official``, an
        :class:`~estinet.models.official.OfficialESTINet`. Every model maps (B, T, 3, H, W) frames in [0, 1] to
        (coarse (B, T, 3, H, W), refined centre frame (B, 3, H, W)).
    """
    if config.variant == "official":
        from estinet.models.official import OfficialESTINet

        return OfficialESTINet()
    from estinet.models.estinet import ESTINet

    return ESTINet(config)


__all__ = ["ModelConfig", "build_model", "preset_config"]
