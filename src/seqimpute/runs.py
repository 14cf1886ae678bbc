"""Run folders: config.toml, metrics.jsonl, last.pt / best.pt checkpoints (atomic, loadable without running code),
and the same checkpoints as safetensors files (what a repository commits to carry a run to another machine)."""

from __future__ import annotations

import json
import os
import pickle
import time
import tomllib
import warnings
from pathlib import Path

import tomli_w
import torch

from .errors import SeqImputeError
from .files import atomic_write

CHECKPOINT_FORMAT = "seqimpute-checkpoint"
CHECKPOINT_VERSION = 1


def atomic_save(obj, path: Path) -> None:
    """torch.save ``obj`` to ``path`` atomically and durably (files.atomic_write): a crash leaves either the
    previous complete checkpoint or the new complete one, never a torn one."""

    def write(f):
        torch.save(obj, f)
        if _SLOW_WRITE_ENV in os.environ:  # test seam (crash tests): widen the window in which a kill tears a write
            time.sleep(float(os.environ[_SLOW_WRITE_ENV]))

    atomic_write(path, write, durable=True)


def save_checkpoint(path: Path, name: str, model, **state) -> None:
    """Write the one checkpoint format, atomically: the model's registry name, config and parameters, and the
    training ``state`` that goes with them (step, elapsed, best, optimizer, rng, ...)."""
    atomic_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model_name": name,
                 "model_config": json.dumps(model.config()), "model": model.state_dict(), **state}, path)


_SLOW_WRITE_ENV = "SEQIMPUTE_TEST_SLOW_CHECKPOINT_S"  # seconds to wait between writing a checkpoint and renaming it


def remove_partials(run: Path) -> list[Path]:
    """Delete the temporary ``.*.part`` files a killed writer left in a run folder (never complete files)."""
    gone = []
    for p in Path(run).glob(".*.part"):
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors, numbers, strings and containers only; a pickle that
    tries to build any other object is refused."""
    path = Path(path)
    if not path.exists():
        raise SeqImputeError(f"{path} does not exist; is this a run folder written by `seqimpute train`?")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        why = str(e).partition("WeightsUnpickler error:")[2].strip().splitlines() or str(e).splitlines() or [""]
        raise SeqImputeError(f"{path} is not a safe seqimpute checkpoint and was refused ({why[0].strip()}); "
                             f"never load it with weights_only=False unless you trust its source.") from None
    except Exception as e:  # on arbitrary bytes the unpickler can fail in any way (IndexError, KeyError, ...)
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise SeqImputeError(f"{path} is corrupt or not a checkpoint ({first}); "
                             f"use another checkpoint or retrain.") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise SeqImputeError(f"{path} is not a seqimpute checkpoint.")
    if ck.get("version", 0) > CHECKPOINT_VERSION:
        raise SeqImputeError(f"{path} was written by a newer seqimpute (format {ck['version']}); upgrade seqimpute.")
    return ck


# A checkpoint as safetensors: its tensors under generated keys, everything else (numbers, strings, lists, dicts,
# the optimiser's integer-keyed state) as JSON in the file's metadata, with {"$t": key} where a tensor was and
# {"$d": [[key, value], ...]} for a dict whose keys are not all strings. Nothing in it can run code.
SAFETENSORS_META = "seqimpute-checkpoint"


def _flatten(obj, tensors: dict):
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()  # clone: safetensors refuses shared storage
        return {"$t": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _flatten(v, tensors) for k, v in obj.items()}
        return {"$d": [[k, _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise SeqImputeError(f"a checkpoint holds a {type(obj).__name__}, which a safetensors checkpoint cannot carry.")


def _unflatten(obj, tensors: dict):
    if isinstance(obj, dict):
        if set(obj) == {"$t"}:
            return tensors[obj["$t"]]
        if set(obj) == {"$d"}:
            return {k: _unflatten(v, tensors) for k, v in obj["$d"]}
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_safetensors_checkpoint(ck: dict, path: Path) -> None:
    """Write checkpoint ``ck`` (a loaded .pt checkpoint, training state included) as one safetensors file,
    atomically; load_safetensors_checkpoint returns an equal dict."""
    from safetensors.torch import save

    tensors: dict = {}
    skeleton = json.dumps(_flatten(ck, tensors))
    atomic_write(path, save(tensors, metadata={SAFETENSORS_META: skeleton}), durable=True)


def load_safetensors_checkpoint(path: Path) -> dict:
    """The checkpoint save_safetensors_checkpoint wrote; a damaged or foreign file is one SeqImputeError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise SeqImputeError(f"{path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(SAFETENSORS_META)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta is None:
            raise ValueError("no seqimpute metadata")
        ck = _unflatten(json.loads(meta), tensors)
    except Exception as e:  # safetensors raises its own error types on a truncated or foreign file
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise SeqImputeError(f"{path} is not a seqimpute safetensors checkpoint ({first}).") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise SeqImputeError(f"{path} is not a seqimpute checkpoint.")
    return ck


TRAINING_STATE = ("optimizer", "rng", "lr_scale", "restores")  # what resuming needs beyond the weights


def weights_only(ck: dict) -> dict:
    """Checkpoint ``ck`` without its training state: what evaluating, imputing and sampling need."""
    return {k: v for k, v in ck.items() if k not in TRAINING_STATE}


def snapshot_run(run: Path, dest: Path) -> int:
    """Copy a run folder into ``dest`` as files a repository can carry: config.toml, metrics.jsonl, last.safetensors
    (the whole training state) and best.safetensors (weights only). Returns the snapshot's update count."""
    run, dest = Path(run), Path(dest)
    last = load_checkpoint(run / "last.pt")
    save_safetensors_checkpoint(last, dest / "last.safetensors")
    if (run / "best.pt").exists():
        save_safetensors_checkpoint(weights_only(load_checkpoint(run / "best.pt")), dest / "best.safetensors")
    for name in ("config.toml", "metrics.jsonl"):
        atomic_write(dest / name, (run / name).read_bytes(), durable=True)
    return int(last["step"])


def restore_run(src: Path, run: Path) -> int:
    """The run folder of snapshot ``src`` (snapshot_run), ready for `seqimpute train --run` to resume exactly.
    Refuses to replace a run folder that already holds a checkpoint. Returns the update it resumes from."""
    src, run = Path(src), Path(run)
    if (run / "last.pt").exists():
        raise SeqImputeError(f"{run} already holds a run; move it away before restoring {src} into it.")
    last = load_safetensors_checkpoint(src / "last.safetensors")
    for name in ("config.toml", "metrics.jsonl"):
        atomic_write(run / name, (src / name).read_bytes(), durable=True)
    if (src / "best.safetensors").exists():
        atomic_save(load_safetensors_checkpoint(src / "best.safetensors"), run / "best.pt")
    atomic_save(last, run / "last.pt")  # last: a run folder with last.pt is a resumable one
    return int(last["step"])


def write_config(run: Path, config: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    atomic_write(run / "config.toml", tomli_w.dumps(_toml_safe(config)).encode())


def _toml_safe(d):
    if isinstance(d, dict):
        return {k: _toml_safe(v) for k, v in d.items() if v is not None}
    if isinstance(d, (list, tuple)):
        return [_toml_safe(v) for v in d]
    return d


def read_config(run: Path) -> dict:
    path = Path(run) / "config.toml"
    if not path.exists():
        raise SeqImputeError(f"{run} is not a run folder (no config.toml); give the folder `seqimpute train --run` wrote.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SeqImputeError(f"{path} is not valid TOML ({e}); restore it or start a new run.") from None


def truncate_metrics(run: Path, step: int) -> int:
    """Keep only the metrics records of steps <= ``step`` (and drop lines a crash tore), atomically: a run resumed
    from the checkpoint of ``step`` then logs every later step exactly once. Returns the number of lines dropped."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        at = rec.get("step", 0) if isinstance(rec, dict) else None
        if isinstance(at, (int, float)) and at <= step:
            keep.append(line)
    if len(keep) == len(lines) and (not lines or path.read_bytes().endswith(b"\n")):
        return 0  # nothing to drop and no cut-off last line: leave the file alone
    atomic_write(path, "".join(line + "\n" for line in keep).encode(), durable=True)
    return len(lines) - len(keep)


def append_metrics(run: Path, record: dict, name: str = "metrics.jsonl") -> None:
    """One JSON line appended to the run's ``name`` (a crash can cut only the last line, which readers skip)."""
    with open(Path(run) / name, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run: Path) -> list[dict]:
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def training_record(run: Path, cfg: dict, ck: dict) -> dict:
    """How a checkpoint was trained: its updates, the training images it had seen, the time its run's budget
    counted (``clock``: wall or cpu) and the training process's CPU seconds (rank 0's with several processes).
    A value older checkpoints did not record is None (images: then taken from the metrics logged at that step)."""
    step = int(ck.get("step", 0))
    images = ck.get("images")
    if images is None:
        images = next((r["images"] for r in read_metrics(run) if r.get("step") == step and "images" in r), None)
    return {"updates": step, "images_seen": images, "clock": cfg.get("train", {}).get("clock", "wall"),
            "training_s": float(ck.get("elapsed", 0.0)), "cpu_s": ck.get("cpu_s")}


def model_of_checkpoint(ck: dict, name: str, path: Path):
    """The ``name`` model checkpoint ``ck`` (read from ``path``) holds: built from its stored configuration, checked
    like user options (checkpoints are untrusted), with its parameters loaded (cast to the model's dtype)."""
    from .models.registry import model_from_config

    try:
        model = model_from_config(name, json.loads(ck["model_config"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # ValueError covers JSONDecodeError
        raise SeqImputeError(f"{path} holds an unusable model configuration ({type(e).__name__}: {e}); "
                             f"use another checkpoint or retrain.") from None
    try:
        model.load_state_dict(ck["model"])
    except (KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise SeqImputeError(f"{path} does not fit the {name} model ({str(e).splitlines()[0] if str(e) else type(e).__name__}).") from None
    return model


def load_run_model(run: Path, which: str = "best", device="cpu"):
    """The trained model of a run folder (``best`` falls back to ``last``) and its config."""
    run = Path(run)
    cfg = read_config(run)
    path = run / f"{which}.pt"
    if not (run / "last.pt").exists() and not path.exists():
        raise SeqImputeError(f"{run} has no checkpoint yet; train it first (seqimpute train --run {run}).")
    if which == "best" and not path.exists():
        path = run / "last.pt"
    ck = load_checkpoint(path)
    name = cfg["model"]["name"]
    if ck.get("model_name") != name:
        raise SeqImputeError(f"{path} holds a {ck.get('model_name')} model but {run}/config.toml says {name}; "
                             f"the run folder is mixed up: retrain or restore the matching files.")
    model = model_of_checkpoint(ck, name, path)
    if not model.trainable:  # baselines keep the training set out of the checkpoint and refit from the data
        from .data.sources import load_dataset

        model.fit(load_dataset(cfg["train"]["data"], "train", **cfg["train"].get("data_options", {})))
    return model.to(device), cfg, ck
