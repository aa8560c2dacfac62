"""Chat stage: base vs LoRA generation, batch compare, export (zip, merge, push, report)."""
