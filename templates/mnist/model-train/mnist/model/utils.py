"""Helpers of the MNIST train script: where the inputs are, parameters, CSV loading, JSON output."""
import glob
import json
import os

import pandas as pd

# The original kaos (Pachyderm) mounted its inputs here; used when the KAOS_TRAIN_* variables are unset.
DEFAULT_DATA_DIR = "/pfs/data"
DEFAULT_HYPER_DIR = "/pfs/hyper"


def _visible_entries(path):
    return sorted(entry for entry in os.listdir(path) if not entry.startswith("."))


def find_data_root():
    """The directory holding training/, validation/ and optionally test/.

    KAOS_TRAIN_DATA names it; without it the first entry of /pfs/data is used (the original's layout,
    /pfs/data/<bundle:hash>/). If the chosen directory has no training/ but one of its sub-directories
    has (e.g. the data bundle's own root folder), that sub-directory is used.
    """
    root = os.environ.get("KAOS_TRAIN_DATA")
    if not root:
        if not os.path.isdir(DEFAULT_DATA_DIR) or not _visible_entries(DEFAULT_DATA_DIR):
            raise SystemExit("No training data: set KAOS_TRAIN_DATA or mount a data bundle under %s"
                             % DEFAULT_DATA_DIR)
        root = os.path.join(DEFAULT_DATA_DIR, _visible_entries(DEFAULT_DATA_DIR)[0])
    if not os.path.isdir(os.path.join(root, "training")):
        for entry in _visible_entries(root) if os.path.isdir(root) else []:
            if os.path.isdir(os.path.join(root, entry, "training")):
                return os.path.join(root, entry)
        raise SystemExit("No training/ directory in data bundle %s" % root)
    return root


def find_hyperparams_files():
    """Every *.json below KAOS_TRAIN_HYPER (default /pfs/hyper), sorted; normally zero or one."""
    hyper_dir = os.environ.get("KAOS_TRAIN_HYPER") or DEFAULT_HYPER_DIR
    if not os.path.isdir(hyper_dir):
        return []
    return sorted(glob.glob(os.path.join(hyper_dir, "**", "*.json"), recursive=True))


def load_params(static_path="params.json"):
    """The static params.json (from the working directory) with the hyperparameter file merged over it."""
    params = {}
    if os.path.isfile(static_path):
        with open(static_path) as handle:
            params.update(json.load(handle))
    for path in find_hyperparams_files():
        with open(path) as handle:
            hyperparams = json.load(handle)
        print("Merging hyperparameters from %s: %s" % (path, json.dumps(hyperparams, sort_keys=True)))
        params.update(hyperparams)
    return params


def read_split(data_root, split, header=None):
    """Concatenate every CSV file below <data_root>/<split>/ (sorted); None when there is none."""
    split_dir = os.path.join(data_root, split)
    files = sorted(glob.glob(os.path.join(split_dir, "**", "*.csv"), recursive=True))
    if not files:
        return None
    print("Loading %s data from %s (%d file%s)" % (split, split_dir, len(files), "" if len(files) == 1 else "s"))
    return pd.concat([pd.read_csv(path, header=header) for path in files], ignore_index=True)


def split_labels(frame, label_column):
    """(features, labels): the first `label_column` columns are labels (MNIST: 1)."""
    return frame.iloc[:, label_column:], frame.iloc[:, label_column - 1]


def write_json(path, payload):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
