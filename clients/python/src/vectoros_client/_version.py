"""The client's version: the server release whose API it speaks (see pyproject.toml)."""

__version__ = "0.1.0"
