"""Time of each convolution shape of ViTAEv2-S's convolution branches on this CPU's kernels.

The normal cells' branch is three 3x3 convolutions (dim -> 4 dim -> dim -> dim); stage 0 runs them
dense (one group), stages 1-3 in groups of 4 input channels, so the middle layer reads 16
channels per group. For each layer at 224 px input (batch 8, channels-last, fp32) the script
times the forward pass, the gradient of the input and the gradient of the weights (median of
``--repeats`` after warm-up) and prints GMAC/s for each, with the blocks per stage to weigh them.
``--probe`` adds the same middle layer with 8 and 16 output channels per group: the time a
kernel spends per input group, whatever it writes.

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/conv_shapes.py [--probe]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F
from machine import torch_description  # benchmarks/ is on sys.path when run as a script

# (input channels, output channels, groups, map side at 224 px, normal cells in the stage)
VITAEV2_S_LAYERS: List[Tuple[int, int, int, int, int]] = []
for dim, groups, side, blocks in ((64, 1, 56, 2), (128, 32, 28, 2), (256, 64, 14, 8), (512, 128, 7, 2)):
    VITAEV2_S_LAYERS += [(dim, 4 * dim, groups, side, blocks), (4 * dim, dim, groups, side, blocks)]
    VITAEV2_S_LAYERS += [(dim, dim, groups, side, blocks)]


def _median_ms(step: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def time_layer(cin: int, cout: int, groups: int, side: int, batch: int, repeats: int) -> Dict[str, float]:
    images = torch.randn(batch, cin, side, side).contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = (0.05 * torch.randn(cout, cin // groups, 3, 3)).requires_grad_()
    grad = torch.randn(batch, cout, side, side).contiguous(memory_format=torch.channels_last)

    def forward() -> torch.Tensor:
        return F.conv2d(images, weight, None, 1, 1, 1, groups)

    with torch.no_grad():
        forward_ms = _median_ms(forward, repeats)
    # each gradient alone: the backward pass less the forward it has to run first
    input_ms = _median_ms(lambda: torch.autograd.grad(forward(), images, grad), repeats) - forward_ms
    weight_ms = _median_ms(lambda: torch.autograd.grad(forward(), weight, grad), repeats) - forward_ms
    gmacs = batch * side * side * cout * (cin // groups) * 9 / 1e9
    return {
        "forward_ms": round(forward_ms, 2),
        "grad_input_ms": round(input_ms, 2),
        "grad_weight_ms": round(weight_ms, 2),
        "forward_gmac_s": round(gmacs / forward_ms * 1e3, 1),
        "grad_input_gmac_s": round(gmacs / max(input_ms, 1e-3) * 1e3, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--probe", action="store_true", help="also 8 and 16 output channels per group")
    args = parser.parse_args()
    layers = [(*layer, "vitaev2_s") for layer in VITAEV2_S_LAYERS]
    if args.probe:
        for cin, _, groups, side, blocks in VITAEV2_S_LAYERS:
            if groups > 1 and cin // groups == 16:
                layers += [(cin, groups * width, groups, side, blocks, "probe") for width in (8, 16)]
    rows = []
    for cin, cout, groups, side, blocks, kind in layers:
        row = {"layer": f"{cin}->{cout} g{groups} {side}px", "kind": kind, "blocks": blocks}
        row.update(time_layer(cin, cout, groups, side, args.batch, args.repeats))
        rows.append(row)
        print(json.dumps(row), flush=True)
    totals = {
        key: round(sum(row[key] * row["blocks"] for row in rows if row["kind"] == "vitaev2_s"), 1)
        for key in ("forward_ms", "grad_input_ms", "grad_weight_ms")
    }
    print(json.dumps({"batch": args.batch, "vitaev2_s_totals_ms": totals, "machine": torch_description()}))


if __name__ == "__main__":
    main()
