"""torchvision works on this machine, with its native ops or with rsfm's nms fallback."""

import subprocess
import sys

import pytest
import torch

from rsfm import _compat

# isort: split


def _greedy_nms(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for index in order:
        x1, y1, x2, y2 = boxes[index].tolist()
        suppressed = False
        for kept in keep:
            a1, b1, a2, b2 = boxes[kept].tolist()
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
            if inter / union > threshold:
                suppressed = True
                break
        if not suppressed:
            keep.append(index)
    return keep


def test_torchvision_nms_matches_greedy_definition():
    import torchvision

    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(200, 2, generator=generator) * 100
    sizes = torch.rand(200, 2, generator=generator) * 30 + 1
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(200, generator=generator)
    kept = torchvision.ops.nms(boxes, scores, 0.4).tolist()
    assert kept == _greedy_nms(boxes, scores, 0.4)
    assert 0 < len(kept) < 200


def _torchvision_works_without_rsfm() -> bool:
    """Whether torchvision's own native library serves ``nms`` in a fresh interpreter that never imports rsfm."""
    code = "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0


def test_fallback_only_when_native_library_is_unusable():
    import torchvision  # noqa: F401

    native = _torchvision_works_without_rsfm()
    assert _compat.NATIVE_TORCHVISION is native
    assert (_compat._LIBRARY is None) is native  # the fallback is registered exactly when needed


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)


def test_import_rsfm_arms_the_fix_without_importing_torch():
    """``import rsfm`` (and its light subpackages) import no torch; the first import of a
    torchvision user afterwards, in any order with torch, gets a working torchvision, also after
    a probe with ``importlib.util.find_spec`` (as Lightning and torchmetrics probe for it)."""
    check = (
        "import torchvision, torch; "
        "assert torchvision.ops.nms(torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10.0]]), torch.tensor([0.9, 0.8]), 0.5)"
        ".tolist() == [0]"
    )
    light = "import sys, rsfm, rsfm.data, rsfm.tasks, rsfm.inference; assert 'torch' not in sys.modules, 'torch'; "
    probe_first = "import rsfm, importlib.util; assert importlib.util.find_spec('torchvision'); "
    orders = (
        light + "import timm; " + check,
        "import torch; import rsfm; import lightning; " + check,
        probe_first + check,
    )
    for order in orders:
        run = _fresh(order)
        assert run.returncode == 0, run.stderr[-2000:]


def test_without_rsfm_first_a_broken_torchvision_stays_broken():
    """The hook is what makes torchvision import here when its native library fails: imported
    after torchvision, rsfm cannot help (the test machine's wheel is the broken kind)."""
    if _torchvision_works_without_rsfm():
        pytest.skip("torchvision's native library loads on this machine: nothing to fix")
    run = _fresh("import torchvision")
    assert run.returncode != 0 and "torchvision::nms does not exist" in run.stderr
