"""Hugging Face ``datasets`` splits stored locally (save_to_disk folders or parquet files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.dataset import HFReader
from core.data.index import SplitIndex

def load_hf_split(root: Path, split: str, image_column: str, label_column: str) -> tuple[SplitIndex, HFReader]:
    """Open one split of a Hugging Face dataset stored locally: a ``save_to_disk`` folder (a DatasetDict at
    ``root`` or a Dataset at ``root/<split>``) or parquet files (``root/**/<split>-*.parquet`` or
    ``root/<split>/*.parquet``, the layout of e.g. ``evanarlian/imagenet_1k_resized_256``).

    Labels are read from the Arrow column, never by decoding images.

    Raises:
        FileNotFoundError: nothing matching the split is found, naming the layouts looked for.
        ValueError: missing columns.
    """
    import datasets

    ds = None
    if (root / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(root))
        if split not in dd:
            raise FileNotFoundError(f"split '{split}' not in {root} (splits: {list(dd)}); set --data.train_split/"
                                    f"--data.val_split")
        ds = dd[split]
    elif (root / split / "dataset_info.json").is_file() or (root / split / "state.json").is_file():
        ds = datasets.load_from_disk(str(root / split))
    else:
        files = sorted({*root.glob(f"**/{split}-*.parquet"), *root.glob(f"{split}/*.parquet"),
                        *root.glob(f"{split}.parquet")})
        if files:
            ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    if ds is None:
        raise FileNotFoundError(
            f"no Hugging Face split '{split}' under {root}: looked for a save_to_disk folder (dataset_dict.json, "
            f"or {split}/dataset_info.json) and parquet files ({split}-*.parquet, {split}/*.parquet)")
    for col in (image_column, label_column):
        if col not in ds.column_names:
            raise ValueError(f"column '{col}' not in {root} split '{split}' (columns: {ds.column_names}); "
                             f"set --data.image_column / --data.label_column")
    labels = ds.data.column(label_column).to_numpy().astype(np.int64)
    feature = ds.features[label_column]
    if hasattr(feature, "names"):
        classes = list(feature.names)
    else:
        classes = [str(i) for i in range(int(labels.max()) + 1)]
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels of split '{split}' lie outside [0, {len(classes)}) (unlabelled test split?)")
    return SplitIndex(classes=classes, labels=labels), HFReader(ds, image_column, f"{root.name}/{split}")
