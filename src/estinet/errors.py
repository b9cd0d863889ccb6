"""The one base of every error estinet raises on purpose.

Each layer keeps its own error class (``DerainError``, ``WeightsError``, ``ConfigError``, ...), named after the layer
that was handed the bad value, and each derives from :class:`EstinetError` *and* :class:`ValueError`: ``except
ValueError`` in existing user code keeps working, and the command line can tell a refused input (one line, exit code
2) from a bug inside numpy, torch or estinet itself (a traceback).
"""

from __future__ import annotations

__all__ = ["DerainError", "DeviceError", "EstinetError"]


class EstinetError(Exception):
    """An input, option, file or resource that estinet refuses; the message names the value and the fix."""


class DeviceError(EstinetError, ValueError):
    """A device that does not exist or is not available here (:func:`estinet.runtime.resolve_device`)."""


class DerainError(EstinetError, ValueError):
    """Inputs, options or resources that inference cannot work with; the message names the value and the fix.

    Defined here rather than in :mod:`estinet.inference` because every module of that package raises it.
    """
