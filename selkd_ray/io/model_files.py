"""The files of a model folder as timm's `save_for_hf` and transformers' `save_pretrained` write them: their
names, which weights file a folder holds, and a JSON config read with one-line errors. Below both the zoo's walk
and the model loaders, so neither needs the other for them."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import fail

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def weights_in(folder: Path) -> Path | None:
    """A folder's weights file (`model.safetensors` preferred over `pytorch_model.bin`); None when none."""
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def read_json_config(path: Path) -> dict:
    """A config file as a JSON object; every problem is one line naming the file."""
    if not path.is_file():
        raise fail(str(path), "missing; expected a config.json beside the teacher's weights")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise fail(str(path), f"not valid JSON ({err.msg if hasattr(err, 'msg') else err})") from None
    if not isinstance(config, dict):
        raise fail(str(path), "expected a JSON object")
    return config
