"""Where a backbone's CPU time goes: torch profiler by operator, then by module kind.

Inference (``--mode infer``) or a training step (``--mode train``: forward + backward), fp32,
channels-last, at the given batch and size. Prints the CPU model, its vector flags and the kernel
restriction the run is under, then two tables (self CPU time per operator, and per module kind:
time inside each kind of block, children included), and one JSON line.

Measure the AVX2 path of an AVX-512/AMX machine with the kernels restricted:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python benchmarks/profile_backbone.py --model vitaev2_s --mode infer
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Dict, List

import rsfm.models  # noqa: F401  (torchvision shim, registers ViTAEv2 in timm)

# isort: split
import timm
import torch
from machine import torch_description  # benchmarks/ is on sys.path when run as a script
from torch.profiler import ProfilerActivity, profile, record_function


def _wrap_modules(model: torch.nn.Module) -> List[object]:
    """Profiler ranges named after each module's class (``module:Attention``)."""
    handles, open_ranges = [], {}

    def enter(module: torch.nn.Module, _inputs: object) -> None:
        context = record_function(f"module:{type(module).__name__}")
        context.__enter__()
        open_ranges.setdefault(id(module), []).append(context)

    def leave(module: torch.nn.Module, _inputs: object, _output: object) -> None:
        open_ranges[id(module)].pop().__exit__(None, None, None)

    for module in model.modules():
        container = isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList))
        if module is not model and not container and (list(module.children()) or isinstance(module, torch.nn.Conv2d)):
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
    return handles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vitaev2_s")
    parser.add_argument("--mode", choices=["infer", "train"], default="infer")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps after 2 warm-up steps")
    parser.add_argument("--top", type=int, default=15, help="rows per table")
    args = parser.parse_args()

    machine = torch_description()
    print(json.dumps(machine))
    model = timm.create_model(args.model, num_classes=1000).to(memory_format=torch.channels_last)
    images = torch.randn(args.batch, 3, args.size, args.size).to(memory_format=torch.channels_last)
    training = args.mode == "train"
    model.train(training)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if training else None

    def step() -> None:
        if training:
            optimizer.zero_grad(set_to_none=True)
            model(images).mean().backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                model(images)

    for _ in range(2):
        step()
    handles = _wrap_modules(model)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        wall_us = (time.perf_counter() - start) * 1e6
    for handle in handles:
        handle.remove()

    events = profiler.key_averages()
    total_us = sum(event.self_cpu_time_total for event in events if not event.key.startswith("module:"))
    operators = sorted(
        (event for event in events if not event.key.startswith("module:")),
        key=lambda event: event.self_cpu_time_total,
        reverse=True,
    )
    modules: Dict[str, float] = defaultdict(float)
    for event in events:
        if event.key.startswith("module:"):
            modules[event.key[len("module:") :]] += event.cpu_time_total
    step_ms = total_us / args.steps / 1e3
    print(
        f"\n{args.model} {args.mode}, batch {args.batch}, {args.size}px: {wall_us / args.steps / 1e3:.0f} ms per "
        f"step wall ({step_ms:.0f} ms of operator time), under the profiler"
    )
    print(f"\n{'operator':48s} {'self ms/step':>12s} {'share':>6s}")
    for event in operators[: args.top]:
        share = event.self_cpu_time_total / total_us
        print(f"{event.key[:48]:48s} {event.self_cpu_time_total / args.steps / 1e3:12.1f} {share:6.1%}")
    print(f"\n{'module kind (children included; share of wall time)':48s} {'ms/step':>12s} {'share':>6s}")
    for name, time_us in sorted(modules.items(), key=lambda item: item[1], reverse=True)[: args.top]:
        print(f"{name[:48]:48s} {time_us / args.steps / 1e3:12.1f} {time_us / wall_us:6.1%}")
    result = {
        **machine,
        "model": args.model,
        "mode": args.mode,
        "batch": args.batch,
        "size": args.size,
        "ms_per_step": round(step_ms, 1),
        "operators_ms": {e.key: round(e.self_cpu_time_total / args.steps / 1e3, 2) for e in operators[: args.top]},
        "modules_ms": {k: round(v / args.steps / 1e3, 2) for k, v in modules.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
