"""R1 LoRA Studio: `python app.py` opens the studio (also the Hugging Face Space entry point)."""

import sys

try:
    from studio import spaces  # first: on ZeroGPU `spaces` must patch torch before anything loads it
except ValueError as error:  # a malformed STUDIO_ZERO_GPU_* variable
    sys.exit(f"R1 LoRA Studio cannot start: {error}")


def main() -> None:
    try:
        spaces.check_settings()  # a malformed STUDIO_AUTH or other STUDIO_* stops here, with the reason
    except ValueError as error:
        sys.exit(f"R1 LoRA Studio cannot start: {error}")
    from studio.ui.app import build_app, launch_settings

    build_app().queue().launch(**launch_settings())


if __name__ == "__main__":
    main()
