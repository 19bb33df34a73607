"""A raster that carries code: a GDAL VRT (named ``.tif``; GDAL goes by content) whose bands are
Python pixel functions. GDAL runs them in the reading process when ``GDAL_VRT_ENABLE_PYTHON=YES``
is set; rsfm turns that off on import, so the code never runs, even for a user whose environment
enables it."""

import json
import os
import subprocess
import sys
from pathlib import Path

_BAND = """  <VRTRasterBand dataType="Byte" band="{band}" subClass="VRTDerivedRasterBand">
    <PixelFunctionType>payload</PixelFunctionType>
    <PixelFunctionLanguage>Python</PixelFunctionLanguage>
    <PixelFunctionCode><![CDATA[
def payload(in_ar, out_ar, *args, **kwargs):
    open({marker!r}, "w").write("code from a raster ran")
    out_ar[:] = 7
]]>
    </PixelFunctionCode>
  </VRTRasterBand>
"""

_READ = """
import json, sys
import rasterio

if sys.argv[2] == "rsfm":
    import rsfm  # noqa: F401
try:
    with rasterio.open(sys.argv[1]) as dataset:
        result = int(dataset.read(1)[0, 0])
except Exception as error:  # rasterio chains GDAL's message as the cause
    result = str(error.__cause__ or error)
print(json.dumps(result))
"""


def _hostile_raster(folder: Path, marker: Path) -> Path:
    bands = "".join(_BAND.format(band=band, marker=str(marker)) for band in (1, 2, 3))
    path = folder / "scene.tif"
    path.write_text(
        '<VRTDataset rasterXSize="40" rasterYSize="30">\n  <SRS>EPSG:32616</SRS>\n'
        f"  <GeoTransform>733600, 0.5, 0, 3725000, 0, -0.5</GeoTransform>\n{bands}</VRTDataset>\n"
    )
    return path


def _run(arguments, tmp_path):
    environment = dict(os.environ, GDAL_VRT_ENABLE_PYTHON="YES")  # a user who enabled it for themselves
    return subprocess.run(arguments, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300)


def test_code_in_a_raster_never_runs(tmp_path, building_checkpoint):
    marker = tmp_path / "ran.txt"
    raster = _hostile_raster(tmp_path, marker)
    script = tmp_path / "read.py"
    script.write_text(_READ)

    # the file is live: plain rasterio in that environment runs it (what rsfm must prevent)
    plain = _run([sys.executable, str(script), str(raster), "plain"], tmp_path)
    assert json.loads(plain.stdout) == 7 and marker.read_text() == "code from a raster ran"
    marker.unlink()

    # after `import rsfm` the same read fails instead
    guarded = _run([sys.executable, str(script), str(raster), "rsfm"], tmp_path)
    assert "Python code" in json.loads(guarded.stdout) and not marker.exists()

    output = tmp_path / "out" / "map.tif"
    command = [sys.executable, "-c", "import sys; from rsfm.cli import main; sys.exit(main(sys.argv[1:]))"]
    command += ["predict-raster", str(raster)]
    completed = _run([*command, "--checkpoint", str(building_checkpoint), "--output", str(output)], tmp_path)
    assert completed.returncode == 2, completed.stderr[-2000:]
    message = completed.stderr.strip().splitlines()
    assert len(message) == 1 and str(raster) in message[0] and "never runs code from a raster" in message[0]
    assert not marker.exists() and not output.parent.exists()
