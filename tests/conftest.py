import os

import pytest

# Tests never reach a model or dataset hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_tokenizer():
    from studio.models import load_tokenizer

    return load_tokenizer("demo")


@pytest.fixture(scope="session")
def studio_url(tmp_path_factory):
    """The studio running in this process on a free port, writing into a temporary STUDIO_HOME."""
    import studio.config as config

    home = tmp_path_factory.mktemp("studio-home")
    config.STUDIO_HOME, config.DATASETS_DIR, config.RUNS_DIR = home, home / "datasets", home / "runs"
    from studio.ui import app as studio_app

    studio_app.STUDIO_HOME, studio_app.DATASETS_DIR = home, home / "datasets"
    app = studio_app.build_app()
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                       **studio_app.launch_settings())
    yield app.local_url
    app.close()


def pytest_configure(config):
    # gradio's queue still uses pandas options that pandas 3 deprecates; not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:gradio.*")
    config.addinivalue_line("filterwarnings", "ignore:.*no_silent_downcasting.*")
    config.addinivalue_line("filterwarnings", "ignore:The copy keyword is deprecated.*")
