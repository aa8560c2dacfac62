import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never reach a model or dataset hub, and write runs and exports into a throwaway STUDIO_HOME
# (set before any studio module reads it).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["STUDIO_HOME"] = tempfile.mkdtemp(prefix="studio-tests-")
atexit.register(shutil.rmtree, os.environ["STUDIO_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def demo_tokenizer():
    from studio.models import load_tokenizer

    return load_tokenizer("demo")


@pytest.fixture(scope="session")
def studio_home():
    return Path(os.environ["STUDIO_HOME"])


@pytest.fixture(scope="session")
def studio_url(studio_home):
    """The studio running in this process on a free port, writing into the tests' STUDIO_HOME."""
    from studio.ui import app as studio_app

    app = studio_app.build_app()
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                       **studio_app.launch_settings())
    yield app.local_url
    app.close()


@pytest.fixture(scope="module")
def client(studio_url):
    """A gradio_client for the running studio, a fresh session per test module: the tabs' endpoints as a
    user's script would call them."""
    from gradio_client import Client

    return Client(studio_url, verbose=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped where there is none")
    # gradio's queue still uses pandas options that pandas 3 deprecates; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:gradio.*")
    config.addinivalue_line("filterwarnings", "ignore:.*no_silent_downcasting.*")
    config.addinivalue_line("filterwarnings", "ignore:The copy keyword is deprecated.*")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
