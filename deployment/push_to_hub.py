"""Upload the Space folder (app, exported model, examples) to a Hugging Face Space.

    python deployment/push_to_hub.py --repo-id USER/resnet-demo --dry-run   # lists what would be sent, no network
    python deployment/push_to_hub.py --repo-id USER/resnet-demo             # needs HF_TOKEN or `hf auth login`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

DEPLOYMENT_DIR = Path(__file__).resolve().parent

SPACE_FILES = ("README.md", "app.py", "requirements.txt")
"""Files a Space needs at its root; README.md carries the Space front-matter (sdk: gradio, app_file: app.py)."""
SPACE_FOLDERS = ("examples", "model")
"""Folders sent whole: the example photos, and the export (model.safetensors, config.json, classes.json, card)."""
REQUIRED_MODEL_FILES = ("model.safetensors", "config.json", "classes.json")
SKIPPED_PARTS = ("__pycache__", ".ipynb_checkpoints", ".DS_Store")


def space_files(folder: Path = DEPLOYMENT_DIR) -> list[tuple[Path, str]]:
    """(local file, path in the Space repo) for everything the Space receives, sorted by repo path.

    Only the allow-listed files and folders go: export.py and this script depend on the repository's ``core``
    package and stay behind.

    Raises:
        FileNotFoundError: a required file is missing (the message says how to make the model files).
    """
    folder = Path(folder)
    missing = [name for name in SPACE_FILES if not (folder / name).is_file()]
    missing += [f"model/{name}" for name in REQUIRED_MODEL_FILES if not (folder / "model" / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}; the model files come from `python -m deployment.export "
            f"--checkpoint <run>/models/best.pt --out {folder / 'model'}`")
    files = [(folder / name, name) for name in SPACE_FILES]
    for sub in SPACE_FOLDERS:
        for path in sorted((folder / sub).rglob("*")):
            if path.is_file() and not any(part in SKIPPED_PARTS for part in path.parts):
                files.append((path, path.relative_to(folder).as_posix()))
    return sorted(files, key=lambda f: f[1])


def describe(files: Sequence[tuple[Path, str]]) -> str:
    """One line per file (size in KiB, repo path), then the total."""
    lines = [f"{path.stat().st_size / 1024:10.1f} KiB  {repo_path}" for path, repo_path in files]
    total = sum(path.stat().st_size for path, _ in files)
    return "\n".join(lines + [f"{len(files)} files, {total / 2 ** 20:.1f} MiB in all"])


def push(repo_id: str, folder: Path = DEPLOYMENT_DIR, dry_run: bool = False, private: bool = False,
         token: Optional[str] = None, message: str = "Update the demo") -> list[tuple[Path, str]]:
    """Send the Space folder to ``repo_id`` (created as a Gradio Space when missing) in one commit.

    With ``dry_run`` nothing is imported from huggingface_hub and no connection is made; the list of files
    that would be sent is returned all the same.

    Raises:
        FileNotFoundError: required files are missing (see :func:`space_files`).
        ValueError: ``repo_id`` is not ``owner/name``.
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--repo-id must be 'owner/name', got {repo_id!r}")
    files = space_files(folder)
    if dry_run:
        return files
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.create_commit(repo_id=repo_id, repo_type="space", commit_message=message,
                      operations=[CommitOperationAdd(path_in_repo=repo_path, path_or_fileobj=str(path))
                                  for path, repo_path in files])
    return files


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo-id", required=True, help="the Space, as owner/name")
    p.add_argument("--folder", type=Path, default=DEPLOYMENT_DIR, help="the Space folder (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="list what would be sent; no network")
    p.add_argument("--private", action="store_true", help="create the Space private")
    p.add_argument("--message", default="Update the demo", help="commit message")
    args = p.parse_args(argv)
    try:
        files = push(args.repo_id, args.folder, args.dry_run, args.private, message=args.message)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    verb = "would send" if args.dry_run else "sent"
    print(f"{verb} to https://huggingface.co/spaces/{args.repo_id}:\n{describe(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
