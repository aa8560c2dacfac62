"""R1 LoRA Studio: check R1 reasoning data, fine-tune R1-Distill models with LoRA/QLoRA, compare."""

__version__ = "0.1.0"
