"""predict_raster on CUDA: fp32 and bf16 mixed precision agree with the CPU run."""

import numpy as np
import pytest
import rasterio
import torch
from inference_helpers import smooth_image, write_raster

from rsfm import predict_raster

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision,tolerance", [("32", 1), ("bf16", 8)])
def test_cuda_matches_cpu(tmp_path, conv_checkpoint, precision, tolerance):
    source = write_raster(tmp_path / "scene.tif", smooth_image(3, 300, 350), nodata=0)
    options = dict(tile_size=128, overlap=32, output_type="probabilities", progress=False)
    predict_raster(source, conv_checkpoint, tmp_path / "cpu.tif", device="cpu", **options)
    predict_raster(source, conv_checkpoint, tmp_path / "cuda.tif", device="cuda", precision=precision, **options)
    with rasterio.open(tmp_path / "cpu.tif") as cpu, rasterio.open(tmp_path / "cuda.tif") as cuda:
        difference = np.abs(cpu.read(1).astype(int) - cuda.read(1).astype(int))
    assert difference.max() <= tolerance  # probabilities in 1/254 steps
