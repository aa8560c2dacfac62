import os

import pytest

# Tests never reach a model or dataset hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_tokenizer():
    from studio.models import load_tokenizer

    return load_tokenizer("demo")
