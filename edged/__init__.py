"""edged: an edge AI daemon for cameras and microphones."""

__version__ = "0.1.0"

__all__ = ["__version__"]
