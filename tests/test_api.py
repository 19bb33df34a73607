"""The public API as a user calls it: ``rsfm.<name>``."""

import importlib.metadata

import numpy as np
import pytest
import torch

import rsfm


def test_every_public_name_resolves():
    assert rsfm.__version__ == importlib.metadata.version("rsfm")  # the installed package is this one
    for name in rsfm.__all__:
        if name == "__version__":
            continue
        value = getattr(rsfm, name)
        # rsfm's own class or function under its own name, not an alias or another package's object
        assert (value.__name__, value.__module__.split(".")[0]) == (name, "rsfm"), name
    assert "load_checkpoint" in dir(rsfm)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = rsfm.nope


def test_load_checkpoint_reads_variant_and_head_from_a_training_snapshot(tmp_path):
    torch.manual_seed(0)
    model = rsfm.create_model("vitaev2_tiny_test", num_classes=7).eval()
    # an RSP-style training snapshot: weights under 'model', DDP prefixes
    snapshot = {"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 1}
    torch.save(snapshot, tmp_path / "snapshot.pth")
    loaded = rsfm.load_checkpoint(tmp_path / "snapshot.pth").eval()
    assert isinstance(loaded, rsfm.ViTAEv2) and loaded.num_classes == 7
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))
    features = rsfm.load_checkpoint(tmp_path / "snapshot.pth", features_only=True)
    assert [m.shape[1] for m in features(images)] == [8, 16, 32, 64]


def test_load_checkpoint_of_official_reference_model(reference_dir):
    model = rsfm.load_checkpoint(reference_dir / "vitaev2_tiny_official.pt").eval()
    expected = torch.load(reference_dir / "vitaev2_tiny_expected.pt", weights_only=True)
    images = torch.load(reference_dir / "vitaev2_tiny_input.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(model(images), expected["logits"], atol=1e-5, rtol=1e-5)


def test_load_checkpoint_of_foreign_weights_names_the_file(tmp_path):
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth.*model_name"):
        rsfm.load_checkpoint(tmp_path / "other.pth")


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    task = rsfm.BuildingSegmentationTask(
        backbone="vitaev2_tiny_test", in_chans=2, mean=[100.0, 200.0], std=[10.0, 20.0]
    )
    return rsfm.BuildingExtractor(task, threshold=0.5)


def test_building_extractor_any_size_and_input_kind(extractor):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 400, size=(37, 53, 2)).astype(np.uint16)
    from_numpy = extractor.predict(image)[0]
    from_tensor = extractor.predict(torch.from_numpy(image.astype(np.int32)).permute(2, 0, 1))[0]
    assert from_numpy.mask.shape == from_numpy.probability.shape == (37, 53)
    assert from_numpy.mask.dtype == np.uint8
    np.testing.assert_array_equal(from_numpy.mask, (from_numpy.probability > 0.5).astype(np.uint8))
    np.testing.assert_allclose(from_numpy.probability, from_tensor.probability, atol=1e-6)
    assert len(extractor.predict([image, image[:20, :30]])) == 2


def test_building_extractor_errors(extractor):
    with pytest.raises(ValueError, match="image 0: has 3 band"):
        extractor.predict(np.zeros((16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="threshold"):
        rsfm.BuildingExtractor(extractor.task, threshold=1.5)
    with pytest.raises(ValueError, match="BuildingExtractor.load"):
        extractor.predict_raster("scene.tif", output="mask.tif")
