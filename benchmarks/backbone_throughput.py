"""Throughput of ViTAEv2-S against timm's Swin-T and ResNet-50, measured in one run.

Same batch, thread count and dtype for every model. Prints one line per measurement and a
final JSON line with images/s and the ratios ``vitaev2_s / swin_tiny`` and
``vitaev2_s / resnet50``. Each model's work per image (GMACs of convolutions and matrix
products, torch's FLOP counter) turns images/s into GMAC/s: how well the kernels use the CPU,
apart from how much work the architecture asks for.

    python benchmarks/backbone_throughput.py            # fp32 + bf16 inference, fp32 train step
    python benchmarks/backbone_throughput.py --no-bf16  # skip bf16 (7-20x slower on AVX2 CPUs)

``--official-code DIR`` adds the official ViTAEv2-S (RSP's ``ViTAE_Window_NoShift_12_basic_stages4_14``,
window 7) to the same run, from a checkout of https://github.com/ViTAE-Transformer/RSP: DIR is its
``Scene Recognition/models`` folder. Nothing of it is copied into rsfm; it is imported from there.
It runs twice: as RSP runs it (NCHW) and, like the other models, with channels-last weights
(``official_vitaev2_s_cl``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Dict, Optional

import rsfm.models  # noqa: F401  (torchvision shim, registers ViTAEv2 in timm)

# isort: split
import timm
import torch
from machine import torch_description  # benchmarks/ is on sys.path when run as a script
from torch.utils.flop_counter import FlopCounterMode

MODELS = ("vitaev2_s", "swin_tiny_patch4_window7_224", "resnet50")
OFFICIAL = "official_vitaev2_s"


def _interleaved_images_per_second(
    steps: Dict[str, Callable[[], None]], batch: int, warmup: int, repeats: int
) -> Dict[str, float]:
    """Median images/s per model, timing the models in turn within each repeat so that any
    background load drifting during the run affects all of them alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: Dict[str, list] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: batch / statistics.median(values) for name, values in times.items()}


def _inference_step(model: torch.nn.Module, images: torch.Tensor, dtype: torch.dtype) -> Callable[[], None]:
    def step() -> None:
        autocast = torch.autocast(images.device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
        with torch.inference_mode(), autocast:
            model(images)

    return step


def _official_model(folder: Optional[Path], size: int) -> Optional[torch.nn.Module]:
    """The official ViTAEv2-S built by its own code in ``folder`` (RSP's ``Scene Recognition/models``)."""
    if folder is None:
        return None
    if not (folder / "ViTAE_Window_NoShift" / "models.py").is_file():
        raise SystemExit(f"{folder}: no ViTAE_Window_NoShift/models.py; give RSP's 'Scene Recognition/models' folder")
    sys.path.insert(0, str(folder))
    module = importlib.import_module("ViTAE_Window_NoShift.models")
    return module.ViTAE_Window_NoShift_12_basic_stages4_14(num_classes=1000, img_size=size, window_size=7)


def _gmacs_per_image(model: torch.nn.Module, image: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass (torch's FLOP counter: convolutions and matrix
    products; attention kernels and elementwise work are not counted), in billions."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops() / 2e9


def _train_step(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = torch.randint(0, 1000, (images.shape[0],), device=images.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16-repeats", type=int, default=3)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--no-bf16", action="store_true", help="skip bf16 autocast inference")
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--official-code", type=Path, help="RSP's 'Scene Recognition/models' folder (see above)")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    images = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    train_images = torch.randn(args.train_batch_size, 3, args.size, args.size, device=device)
    models = {}
    for name in MODELS:
        models[name] = timm.create_model(name, num_classes=1000).to(device).eval().to(memory_format=torch.channels_last)
    official = _official_model(args.official_code, args.size)
    if official is not None:  # as RSP runs it (NCHW), and channels-last like the others
        models[OFFICIAL] = official.to(device).eval()
        models[f"{OFFICIAL}_cl"] = copy.deepcopy(models[OFFICIAL]).to(memory_format=torch.channels_last)
    results: Dict[str, Dict[str, float]] = {
        name: {
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gmacs": _gmacs_per_image(model, images[:1]),
        }
        for name, model in models.items()
    }
    modes = [("fp32_img_s", "fp32 inference")]
    if not args.no_bf16:
        modes.append(("bf16_img_s", "bf16 inference"))
    if not args.no_train:
        modes.append(("train_img_s", "fp32 train step"))
    for metric, label in modes:
        if metric == "train_img_s":
            steps = {n: _train_step(m.train(), train_images) for n, m in models.items()}
            speeds = _interleaved_images_per_second(steps, len(train_images), 1, args.train_repeats)
        else:
            dtype = torch.bfloat16 if metric == "bf16_img_s" else torch.float32
            steps = {n: _inference_step(m, images, dtype) for n, m in models.items()}
            repeats = args.repeats if dtype == torch.float32 else args.bf16_repeats
            speeds = _interleaved_images_per_second(steps, len(images), args.warmup, repeats)
        for name, speed in speeds.items():
            results[name][metric] = speed
            # the training step does about 3x the forward pass's work (forward + two gradients)
            work = results[name]["gmacs"] * speed * (3 if metric == "train_img_s" else 1)
            results[name][metric.replace("img_s", "gmac_s")] = work
            print(f"{name:30s} {label:16s} {speed:8.2f} img/s  {work:6.1f} GMAC/s", flush=True)

    ratios = {}
    for metric in ("fp32_img_s", "bf16_img_s", "train_img_s"):
        if metric in results["vitaev2_s"]:
            for baseline in [name for name in results if name != "vitaev2_s"]:
                short = baseline.split("_")[0] + ("_cl" if baseline.endswith("_cl") else "")
                key = f"vitaev2_s_over_{short}_{metric.replace('_img_s', '')}"
                ratios[key] = round(results["vitaev2_s"][metric] / results[baseline][metric], 3)
    machine = torch_description()
    summary = {
        "device": str(device),
        "machine": machine,
        "cpu_bf16_hardware": bool({"amx_bf16", "avx512_bf16"} & set(machine["flags"])),
        "batch_size": args.batch_size,
        "size": args.size,
        "results": {k: {m: round(v, 3) for m, v in row.items()} for k, row in results.items()},
        "ratios": ratios,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
