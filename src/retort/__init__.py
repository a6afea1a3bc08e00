"""retort: knowledge distillation for transformer language models, with measured results."""

__version__ = "0.1.0"
