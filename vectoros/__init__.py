"""VectorOS AI Core: the command line (`vectoros`) and the generated API (`vectoros.v1`)."""

__version__ = "0.1.0"
