"""What limits embedding MFU: the backbone alone on prepared inputs, in each precision, attention kernel and mode.

``python -m dinoxfer_lib.bench.variants --out variants.json`` on a GPU machine produced the table the performance
chapter records; the extractor's choice (bf16 weights, eager) follows from it.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from dinoxfer_lib.bench.embedding import model_images_per_s
from dinoxfer_lib.bench.flops import gpu_utilisation, vit_flops_per_image
from dinoxfer_lib.devices import resolve_device, synchronize
from dinoxfer_lib.embed import COMPILE_MODES
from dinoxfer_lib.models.backbones import create_backbone

ATTENTION = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION}


def model_variants(*, arch: str = "vit_base_patch8", img_size: int = 224, batch_size: int = 256,
                   device: str | None = None, attention: tuple[str, ...] = tuple(ATTENTION),
                   compile_modes: tuple[str, ...] = COMPILE_MODES, repeats: int = 6) -> list[dict]:
    """Images/s of ``arch`` alone with fp32 weights under bf16 autocast and with bf16 weights, each with the default
    and each forced attention kernel, and under ``torch.compile`` in each of ``compile_modes`` (compile seconds
    recorded; modes after the first only with bf16 weights, the extractor's precision, since max-autotune costs
    minutes). On a CPU (tests) both precisions run and autocast is off."""
    device = resolve_device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    fp32 = create_backbone(arch, in_chans=2, img_size=img_size).eval().to(device)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    x = torch.rand(batch_size, 2, img_size, img_size, device=device)
    flops = vit_flops_per_image(arch, img_size, in_chans=2)

    def autocast_forward(model):
        def forward(inputs):
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
                return model(inputs)
        return forward

    candidates = {"fp32 weights, bf16 autocast": (autocast_forward(fp32.forward_features), x),
                  "bf16 weights": (bf16.forward_features, x.to(torch.bfloat16))}
    rows = []
    for precision, (forward, inputs) in candidates.items():
        for kernel in ("default", *attention):
            row = {"precision": precision, "mode": "eager", "attention": kernel, "batch_size": batch_size}
            try:
                with nullcontext() if kernel == "default" else sdpa_kernel(ATTENTION[kernel]):
                    rate = model_images_per_s(forward, inputs, chunk=batch_size, repeats=repeats)
                    row["images_per_s"] = round(rate, 1)
            except RuntimeError as error:  # a kernel this card or dtype does not offer
                row["error"] = str(error).splitlines()[0][:160]
            rows.append(row)
        for mode in compile_modes if precision == "bf16 weights" else compile_modes[:1]:
            started = time.perf_counter()
            compiled = torch.compile(forward, mode=mode)
            with torch.inference_mode():
                compiled(inputs)
            synchronize(device)
            seconds = round(time.perf_counter() - started, 1)
            rows.append({"precision": precision, "mode": "torch.compile" + ("" if mode == "default" else f" {mode}"),
                         "attention": "default", "batch_size": batch_size, "compile_seconds": seconds,
                         "images_per_s": round(model_images_per_s(compiled, inputs, chunk=batch_size,
                                                                  repeats=repeats), 1)})
    if cuda:
        for row in rows:
            if "images_per_s" in row:
                row.update(gpu_utilisation(device, row["images_per_s"], flops))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = model_variants()
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
