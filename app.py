"""R1 LoRA Studio: `python app.py` opens the studio (also the Hugging Face Space entry point)."""

from studio.ui.app import build_app, launch_settings

if __name__ == "__main__":
    build_app().queue().launch(**launch_settings())
