"""``rsfm predict-raster`` never writes over its inputs, finds bad inputs before any work, and
fails in one line without leaving unfinished files behind.

Real checkpoints, real GeoTIFFs, real links, permissions and file-size limits; no mocks. Every
case checks that the input is byte for byte unchanged.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))  # the inference tests' helpers

from inference_helpers import ConvSegmentationTask, save_with_trainer, smooth_image, write_raster  # noqa: E402

from rsfm import predict_raster  # noqa: E402
from rsfm.cli import main  # noqa: E402
from rsfm.data.pixel_range import PixelRangeWarning  # noqa: E402

TILING = ["--tile-size", "64", "--overlap", "16", "--batch-size", "4", "--device", "cpu", "--quiet"]
UINT8_RANGE = {"dtype": "uint8", "min": 0.0, "max": 255.0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """3-band segmentation checkpoint from before rsfm recorded the training pixels."""
    return save_with_trainer(ConvSegmentationTask(), tmp_path_factory.mktemp("ckpt") / "conv.ckpt")


@pytest.fixture(scope="module")
def uint8_checkpoint(tmp_path_factory) -> Path:
    """3-band segmentation checkpoint trained on uint8 pixels 0-255."""
    task = ConvSegmentationTask(pixel_range=UINT8_RANGE)
    return save_with_trainer(task, tmp_path_factory.mktemp("ckpt") / "conv_uint8.ckpt")


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Tiny models on a shared 2-core machine (see tests/conftest.py)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(capsys, checkpoint: Path, *args: str):
    """``rsfm predict-raster ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        status = main(["predict-raster", "--checkpoint", str(checkpoint), *TILING, *map(str, args)])  # args win
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _error_line(status, err: str) -> str:
    """The command failed with status 2 and said why in exactly one line."""
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsfm predict-raster: error: "), err
    return lines[0]


def _leftovers(*folders: Path):
    """Unfinished outputs, resume states, temporaries and write probes in ``folders``."""
    return sorted(
        path.name
        for folder in folders
        if folder.is_dir()
        for path in folder.iterdir()
        if ".partial" in path.name or path.name.startswith(".rsfm-")
    )


def _only(folder: Path, *names: str) -> None:
    assert sorted(path.name for path in folder.iterdir()) == sorted(names)


def _scene(path: Path, height: int = 90, width: int = 100, seed: int = 0) -> Path:
    return write_raster(path, smooth_image(3, height, width, seed=seed))


def _tiled_geotiff(path: Path, size: int = 1024, block: int = 256) -> Path:
    """A real tiled, deflate-compressed GeoTIFF as cameras and portals deliver them."""
    data = smooth_image(3, size, size, seed=3)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32616",
        transform=rasterio.transform.from_origin(733600.0, 3725000.0, 0.5, 0.5),
        tiled=True,
        blockxsize=block,
        blockysize=block,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return path


# (a) an input named like an output's unfinished or temporary file


@pytest.mark.parametrize(
    "input_name,options,written",
    [
        ("scene.partial.tif", ["--output", "scene.tif"], "the unfinished output raster"),
        ("scene.partial-cog.tif", ["--output", "scene.tif", "--cog"], "the Cloud-Optimized copy"),
        ("polygons.partial.gpkg", ["--output", "mask.tif", "--vector", "polygons.gpkg"], "the unfinished polygon file"),
    ],
)
def test_input_named_like_an_unfinished_output_is_refused(tmp_path, checkpoint, capsys, input_name, options, written):
    source = _scene(tmp_path / input_name)
    before = _sha256(source)
    options = [str(tmp_path / value) if value.endswith((".tif", ".gpkg")) else value for value in options]
    status, _, err = _run(capsys, checkpoint, source, *options)
    line = _error_line(status, err)
    assert f"{source}: {written} (of " in line and f"would overwrite the input {source}" in line
    assert "choose another" in line and "rename the input" in line
    assert _sha256(source) == before
    _only(tmp_path, input_name)  # nothing written, not even the output folder's write probe

    status, out, err = _run(capsys, checkpoint, source, "--output", tmp_path / "elsewhere.tif")
    assert status == 0, err
    assert "elsewhere.tif written" in out
    assert _sha256(source) == before
    assert _leftovers(tmp_path) == [input_name]


# (b) outputs that are the input under another name


def _link(kind: str, target: Path, link: Path) -> None:
    if kind == "hard link":
        os.link(target, link)
    else:
        link.symlink_to(target)


@pytest.mark.parametrize("kind", ["hard link", "symbolic link"])
@pytest.mark.parametrize("linked", ["out.tif", "out.partial.tif"])
def test_output_linked_to_the_input_is_refused(tmp_path, checkpoint, capsys, kind, linked):
    source = _scene(tmp_path / "scene.tif")
    before = _sha256(source)
    _link(kind, source, tmp_path / linked)
    status, _, err = _run(capsys, checkpoint, source, "--output", tmp_path / "out.tif", "--overwrite", "--resume")
    line = _error_line(status, err)
    assert f"{tmp_path / linked}: " in line and f"would overwrite the input {source}" in line
    assert _sha256(source) == before
    _only(tmp_path, "scene.tif", linked)


def test_output_folder_linked_to_the_input_folder_is_refused(tmp_path, checkpoint, capsys):
    folder = tmp_path / "scenes"
    folder.mkdir()
    source = _scene(folder / "scene.tif")
    before = _sha256(source)
    (tmp_path / "masks").symlink_to(folder)
    status, _, err = _run(capsys, checkpoint, source, "--output", tmp_path / "masks" / "scene.tif", "--overwrite")
    assert f"would overwrite the input {source}" in _error_line(status, err)
    assert _sha256(source) == before
    _only(folder, "scene.tif")


def test_output_linked_to_the_checkpoint_is_refused(tmp_path, checkpoint, capsys):
    source = _scene(tmp_path / "scene.tif")
    model = tmp_path / "model.ckpt"
    shutil.copyfile(checkpoint, model)
    before = _sha256(model)
    os.link(model, tmp_path / "out.tif")
    status, _, err = _run(capsys, model, source, "--output", tmp_path / "out.tif", "--overwrite")
    line = _error_line(status, err)
    assert f"would overwrite the checkpoint {model}" in line and "move the checkpoint" in line
    assert _sha256(model) == before


def test_two_inputs_may_not_share_a_written_file(tmp_path, checkpoint):
    folder = tmp_path / "scenes"
    folder.mkdir()
    first, second = _scene(folder / "a.tif"), _scene(folder / "a.partial.tif", seed=1)
    with pytest.raises(ValueError, match="would be written twice") as error:
        predict_raster(folder, checkpoint, tmp_path / "masks", tile_size=64, overlap=16, progress=False)
    assert str(first) in str(error.value) and str(second) in str(error.value)
    assert not (tmp_path / "masks").exists()


# (c) truncated and damaged inputs


def test_truncated_geotiff_fails_the_pre_check(tmp_path, checkpoint, capsys):
    complete = _tiled_geotiff(tmp_path / "complete.tif")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(complete.read_bytes()[: complete.stat().st_size // 2])
    with rasterio.open(truncated) as dataset:  # the header survived: GDAL opens it
        assert dataset.shape == (1024, 1024)
    before = _sha256(truncated)
    masks = tmp_path / "masks"
    status, _, err = _run(
        capsys, checkpoint, complete, truncated, "--output", masks, "--tile-size", "256", "--overlap", "32"
    )
    line = _error_line(status, err)
    assert f"{truncated}: file is truncated or damaged" in line and "fetch it again" in line
    assert _sha256(truncated) == before
    assert not masks.exists()  # the complete file before it was not predicted either

    status, out, err = _run(capsys, checkpoint, complete, "--output", masks, "--tile-size", "256", "--overlap", "32")
    assert status == 0 and "complete.tif written" in out, err
    assert _leftovers(masks) == []


def _damage_block(path: Path, block_row: int, block_col: int) -> None:
    """Overwrite the compressed bytes of one block with garbage, as a bad sector would."""
    with rasterio.open(path) as dataset:
        offset = int(dataset.get_tag_item(f"BLOCK_OFFSET_{block_col}_{block_row}", "TIFF", bidx=1))
        size = int(dataset.get_tag_item(f"BLOCK_SIZE_{block_col}_{block_row}", "TIFF", bidx=1))
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(bytes(range(256)) * (size // 256) + bytes(size % 256))


@pytest.mark.parametrize("resume", [False, True])
def test_block_damaged_past_the_pre_check_fails_in_one_line(tmp_path, checkpoint, capsys, resume):
    source = _tiled_geotiff(tmp_path / "scene.tif", size=1024, block=64)
    _damage_block(source, 5, 5)  # rows and columns 320-383: between the windows the pre-check reads
    before = _sha256(source)
    output = tmp_path / "out" / "mask.tif"
    status, _, err = _run(
        capsys,
        checkpoint,
        source,
        "--output",
        output,
        "--tile-size",
        "256",
        "--overlap",
        "32",
        *(["--resume"] if resume else []),
    )
    line = _error_line(status, err)
    assert f"{source}: cannot read pixels" in line and "fetch it again" in line
    assert _sha256(source) == before
    assert not output.exists()
    if resume:
        assert "mask.partial.tif kept: fix this and run the command again with --resume" in line
        assert _leftovers(output.parent) == ["mask.partial.json", "mask.partial.tif"]
    else:
        assert "partial outputs removed" in line
        assert not output.parent.exists()  # the folder it created is gone too


# (d) outputs that cannot be written


@pytest.fixture()
def read_only_folder(tmp_path):
    """A folder nobody can write, root included: permission bits, and where they do not stop
    root, the immutable attribute (``chattr +i``)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root: permission bits are not enforced
        immutable = (
            shutil.which("chattr") is not None
            and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        )
        if not immutable:
            folder.chmod(0o755)
            pytest.skip("running as root, which ignores permission bits, and 'chattr +i' is not available here")
    try:
        probe = folder / "probe"
        with pytest.raises(OSError):
            probe.touch()
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("below", ["", "new_folder"])
def test_read_only_output_folder_fails_before_any_work(tmp_path, checkpoint, capsys, read_only_folder, below):
    source = _scene(tmp_path / "scene.tif")
    before = _sha256(source)
    output = read_only_folder / below / "mask.tif" if below else read_only_folder / "mask.tif"
    status, _, err = _run(capsys, checkpoint, source, "--output", output)
    line = _error_line(status, err)
    assert f"{read_only_folder}: folder is not writable" in line and "choose another --output" in line
    assert _sha256(source) == before
    assert list(read_only_folder.iterdir()) == []


def test_output_folder_blocked_by_a_file(tmp_path, checkpoint, capsys):
    source = _scene(tmp_path / "scene.tif")
    (tmp_path / "masks").write_text("not a folder")
    status, _, err = _run(capsys, checkpoint, source, "--output", tmp_path / "masks" / "mask.tif")
    line = _error_line(status, err)
    assert f"{tmp_path / 'masks'}: is a file, not a folder (choose another --output)" in line
    _only(tmp_path, "scene.tif", "masks")


@pytest.mark.parametrize("resume", [False, True])
def test_disk_full_during_the_run(tmp_path, checkpoint, capsys, resume):
    """A file-size limit (``ulimit -f``) makes writes fail with EFBIG as a full disk fails
    them with ENOSPC, for root too. Python ignores SIGXFSZ, so the write returns the error."""
    resource = pytest.importorskip("resource")
    rng = np.random.default_rng(0)
    source = write_raster(tmp_path / "noise.tif", rng.integers(0, 256, (3, 512, 512), dtype=np.uint8))
    before = _sha256(source)
    output = tmp_path / "mask.tif"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        status, _, err = _run(
            capsys, checkpoint, source, "--output", output, "--tile-size", "128", *(["--resume"] if resume else [])
        )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    line = _error_line(status, err)
    assert f"{tmp_path / 'mask.partial.tif'}: cannot write" in line and "choose another --output" in line
    assert "files limited to 0.1 MB (ulimit -f)" in line
    assert _sha256(source) == before
    assert not output.exists()
    if resume:
        assert "mask.partial.tif kept: fix this and run the command again with --resume" in line
        assert _leftovers(tmp_path) == ["mask.partial.json", "mask.partial.tif"]
        status, out, err = _run(capsys, checkpoint, source, "--output", output, "--tile-size", "128", "--resume")
        assert status == 0 and "mask.tif written" in out, err
    else:
        assert "partial outputs removed" in line
    assert _leftovers(tmp_path) == []


# (e) pixels unlike the training pixels


def test_uint16_input_into_a_uint8_model_warns_and_strict_refuses(tmp_path, uint8_checkpoint, capsys):
    reflectance = write_raster(tmp_path / "reflectance.tif", smooth_image(3, 90, 100, dtype="uint16", scale=4000))
    before = _sha256(reflectance)

    mismatch = r"reflectance\.tif: data type uint16 \(the model was trained on uint8\)"
    with pytest.warns(PixelRangeWarning, match=mismatch):
        predict_raster(reflectance, uint8_checkpoint, tmp_path / "api.tif", tile_size=64, overlap=16, progress=False)
    assert (tmp_path / "api.tif").exists()

    status, out, err = _run(capsys, uint8_checkpoint, reflectance, "--output", tmp_path / "warned.tif")
    assert status == 0 and "warned.tif written" in out
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("rsfm predict-raster: warning: ")]
    assert "data type uint16" in err and "rescale the input" in err

    status, _, err = _run(capsys, uint8_checkpoint, reflectance, "--output", tmp_path / "strict.tif", "--strict")
    line = _error_line(status, err)
    assert f"{reflectance}: data type uint16 (the model was trained on uint8)" in line
    assert not (tmp_path / "strict.tif").exists()
    assert _sha256(reflectance) == before
    assert _leftovers(tmp_path) == []


def test_matching_pixels_and_older_checkpoints_pass_strict(tmp_path, checkpoint, uint8_checkpoint, capsys):
    scene = _scene(tmp_path / "scene.tif")
    reflectance = write_raster(tmp_path / "reflectance.tif", smooth_image(3, 90, 100, dtype="uint16", scale=4000))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelRangeWarning)
        status, out, err = _run(capsys, uint8_checkpoint, scene, "--output", tmp_path / "uint8.tif", "--strict")
        assert status == 0 and "uint8.tif written" in out, err
        # a checkpoint that does not record its training pixels cannot be checked: no warning
        status, out, err = _run(capsys, checkpoint, reflectance, "--output", tmp_path / "old.tif", "--strict")
        assert status == 0 and "old.tif written" in out, err
    assert "warning" not in err


def test_nodata_pixels_do_not_count_as_pixel_values(tmp_path, uint8_checkpoint, capsys):
    """uint8 values stored as uint16 with a 65535 nodata border are the training pixels."""
    image = smooth_image(3, 90, 100).astype(np.uint16)
    image[:, :20, :] = 65535
    padded = write_raster(tmp_path / "padded.tif", image, nodata=65535)
    status, out, err = _run(capsys, uint8_checkpoint, padded, "--output", tmp_path / "mask.tif", "--strict")
    assert status == 0 and "mask.tif written" in out, err
    with rasterio.open(tmp_path / "mask.tif") as dataset:
        assert (dataset.read(1)[:20] == 255).all()  # nodata in, nodata out
