"""Model names: built-in small models by name, local checkpoints by path, hub ids as they are."""

from __future__ import annotations

import os
from pathlib import Path

BUILT_IN = {
    "tiny": "random-weight tiny Qwen2.5-VL (tests, smoke runs)",
    "demo": "tiny Qwen2.5-VL trained to zoom on the synthetic zoom benchmark (demo, CI regression fixture)",
}
# The demo model's weights ship with the package (a few MB); scripts/train_demo.py rebuilds them.
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo_model"


class ModelNotFound(ValueError):
    pass


def resolve_model(name: str) -> str:
    """A path or hub id that vLLM/transformers can load, or ModelNotFound saying what to pass."""
    if name == "demo":
        return str(demo_model_path())
    if name in BUILT_IN:
        from .tiny_model import tiny_model_path

        return str(tiny_model_path())
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"{name} is a folder but not a checkpoint (no config.json in it)")
        return str(path.resolve())
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") != 1
    if looks_like_path or path.exists():
        raise ModelNotFound(f"checkpoint not found: {name} (pass a checkpoint folder, a hub id like "
                            f"TIGER-Lab/PixelReasoner-RL-v1, or one of: {', '.join(BUILT_IN)})")
    return hub_model(name)


def hub_model(repo_id: str) -> str:
    """A hub id: its folder in the Hugging Face cache where it is there whole, else the id (the
    engine downloads it); offline (HF_HUB_OFFLINE) and not cached, ModelNotFound saying how to
    get it, instead of the engine's warnings and a traceback."""
    try:
        import huggingface_hub
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - a dependency of transformers
        return repo_id
    try:
        return huggingface_hub.snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelNotFound(f"{repo_id} is not in the Hugging Face cache and the hub is off (HF_HUB_OFFLINE); "
                            f"download it where there is a network (hf download {repo_id} --local-dir DIR) "
                            f"and pass --model DIR")
    return repo_id  # the engine downloads it


def demo_model_path(folder: Path = DEMO_MODEL_DIR) -> Path:
    """The committed demo checkpoint, or ModelNotFound saying how to rebuild it."""
    if not (folder / "DONE").is_file() or not (folder / "model.safetensors").is_file():
        raise ModelNotFound(f"the demo model is missing from {folder}; rebuild it (about 20 minutes on a CPU) "
                            f"with: python scripts/train_demo.py --seed 0 --output {folder}")
    return folder
