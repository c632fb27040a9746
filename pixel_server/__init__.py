"""pixel_server: self-hosted tracking pixel, signed redirect and hit log."""

__version__ = "0.1.0"
