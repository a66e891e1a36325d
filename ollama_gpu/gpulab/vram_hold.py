"""Holds GPU memory so that a program started next sees a smaller card's free VRAM.

    python3 -m ollama_gpu.gpulab.vram_hold TARGET_BYTES   # prints "held <bytes> free <bytes>", then waits

llama-server has no counterpart of OLLAMA_GPU_OVERHEAD: its ``--fit`` sizes the model to what the
driver reports free (cudaMemGetInfo), less a margin. Taking the rest of the card with plain device
allocations makes the driver report what a smaller card would, so ``--fit`` and an explicit
``--n-cpu-moe`` meet the same limit they would there. The holder's own CUDA context takes memory
too, so it allocates in steps until the free figure nvidia-smi reports is within ``TOLERANCE`` of
the target (or just below it: a step can overshoot by the allocator's rounding). It exits when its
standard input closes, which frees everything.
"""

from __future__ import annotations

import sys

from ollama_gpu.gpulab.hostinfo import gpu_free_bytes

TOLERANCE = 64 << 20


def hold(target_free: int) -> tuple[list[object], int]:
    import torch  # the GPU machine's; the CPU tests never hold memory

    # The CUDA context comes with the first allocation (about 0.5 GiB on the H200): made before the
    # first measurement, or the holder ends that much below the target (lease d's llama-server runs
    # had 21.99 GiB free for a 22.5 GiB card).
    blocks: list[object] = [torch.zeros(1, dtype=torch.uint8, device="cuda")]
    torch.cuda.synchronize()
    for _ in range(8):
        measured = gpu_free_bytes()
        if measured is None:
            raise SystemExit("vram_hold: nvidia-smi reports no GPU")
        excess = measured[0] - target_free
        if excess <= TOLERANCE:
            return blocks, measured[0]
        blocks.append(torch.empty(excess, dtype=torch.uint8, device="cuda"))
        torch.cuda.synchronize()
    return blocks, (gpu_free_bytes() or (0,))[0]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    blocks, free = hold(int(args[0]))
    held = sum(block.numel() for block in blocks)  # type: ignore[attr-defined]
    print(f"held {held} free {free}", flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
