"""Version of the onto-core distribution."""

__version__ = "0.1.0"
