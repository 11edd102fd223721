"""Quick label-mapping repair: retrain only the classifier of a checkpoint whose class mapping was lost or wrong.

The backbone (conv1, bn1, layer1-4) is frozen, its BatchNorm kept in eval mode; ``fc`` is re-initialised and
trained with the class mapping of the data (sorted WNIDs), and the saved checkpoint carries that mapping
(``classes``, ``class_names``, ``class_to_idx``), so export and the demo get it right.

    python experiments/label_mapping_repair/repair.py --checkpoint RUN/models/best.pt --data.root /data/ILSVRC2012
    python experiments/label_mapping_repair/repair.py --checkpoint RUN/models/best.pt   # on the bundled sample

The architecture (--model.name, --model.small_input) is read from the checkpoint; other flags as in the phase
scripts (config.yaml beside this file holds the short schedule). Writes logs/ and models/ beside this file, or
under --logging.output_dir.
"""

import argparse
import sys
from pathlib import Path

from core.checkpoint import load_checkpoint
from core.cli import EXIT_BAD_INPUT, experiment_main


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--checkpoint", type=Path)
    args, rest = parser.parse_known_args(argv)
    if args.checkpoint is None:
        if "--help" in rest or "-h" in rest:
            return experiment_main(__file__, rest, description=__doc__)
        print("error: --checkpoint PATH is required (the checkpoint whose classifier is repaired)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        model_cfg = (load_checkpoint(args.checkpoint).get("config") or {}).get("model", {})
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    arch = []
    if "name" in model_cfg:
        arch += ["--model.name", model_cfg["name"]]
    if "small_input" in model_cfg:
        arch += ["--model.small_input", str(model_cfg["small_input"]).lower()]
    return experiment_main(__file__, [*arch, "--training.init_from", str(args.checkpoint), *rest],
                           description=__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
