"""The memory child: python -m minbert_core.bench --memory-child NAME CKPT B T STEPS DEV (one fresh
process per strategy, so its peak resident size is its own)."""
import json
import sys

from .cases import _peak_memory_child

if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "--memory-child":
        _, _, name, ckpt, B, T, steps, dev = sys.argv
        print(json.dumps(_peak_memory_child(name, ckpt, int(B), int(T), int(steps), dev)))
    else:
        sys.exit("usage: minbert bench (this module's own arguments are for its memory measurement)")
