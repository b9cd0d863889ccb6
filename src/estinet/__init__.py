"""estinet: video deraining with ESTINet (Zhang et al., 2021)."""

__version__ = "0.1.0"
