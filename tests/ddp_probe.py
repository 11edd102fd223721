"""Run a training script as ``__main__`` (``python ddp_probe.py SCRIPT ARGS...``, under torchrun), then print on
stderr how many DDP wrappers are still alive once it has returned, i.e. after its process group was destroyed.

test_distributed.py asks for none: a wrapper that outlives the group is torn down at interpreter exit, where gloo
can abort the process (:meth:`core.trainer.ImageNetTrainer.close`).
"""

import gc
import runpy
import sys

from torch.nn.parallel import DistributedDataParallel

script, sys.argv = sys.argv[1], sys.argv[1:]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as e:
    code = e.code
alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())  # no collect: what exit would meet
print(f"DDP wrappers alive after the run: {alive}", file=sys.stderr)
sys.exit(code)
