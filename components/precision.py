"""Training precision (`train.precision: auto | bf16 | fp32` of the face and style sections).

bf16 means a bf16 autocast around the networks' convolutions; the weights, the optimizer and the losses stay
fp32. `auto` picks it only where the CPU computes bf16 natively (AVX512-BF16 or AMX): there it roughly halves a
training step, and elsewhere oneDNN emulates it, slower than fp32.
"""
from __future__ import annotations


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware. Torch has no public check; these are its own."""
    import torch
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve(setting: str) -> str:
    """What a train.precision setting means on this CPU: "bf16" or "fp32"."""
    return "bf16" if setting == "bf16" or (setting == "auto" and native_bf16()) else "fp32"
