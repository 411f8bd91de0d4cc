"""The simcore version, at the ground so every layer can name it."""

__version__ = "0.1.0"
