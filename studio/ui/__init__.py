"""The Gradio pages: one module per tab, wiring widgets to core calls (no logic of their own)."""
