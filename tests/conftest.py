"""Shared fixtures. The torchvision shim must be applied before anything imports timm."""

from pathlib import Path

import pytest
import torch

from rsfm import _compat  # noqa: F401

# isort: split

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the clone (present in CI and dev machines, absent for users)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found: these tests need the project's shared data folder")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    path = shared_dir / "reference"
    if not (path / "vitaev2_tiny_official.pt").is_file():
        pytest.skip(f"{path}: official ViTAEv2 reference files not found")
    return path


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data"
    if not path.is_dir():
        pytest.skip(f"{path}: shared test data not found")
    return path


@pytest.fixture
def single_thread():
    """Run torch on one thread for the test. Tiny test models spend most of their time in
    thread synchronisation; on a loaded 2-core machine two threads make them ~5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
