"""A user's SMPL / SMPL-X body model: finding its file, reading it with the optional `smplx` package, and its rest
skeleton. The model files are licensed and user-supplied; nothing here runs without them."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import InvalidRequest
from backend.motion.skeleton import NUM_JOINTS
from backend.retarget.rest_pose import NUM_BETAS, RestSkeleton, place_on_floor


class SmplModelError(InvalidRequest):
    """The user's SMPL/SMPL-X model folder is missing, incomplete or unreadable, or `smplx` is not installed."""

    code = "bad_smpl_model"


@dataclass(frozen=True)
class ModelBody:
    """A user's body model at rest in its own frame (already HumanML3D axes and metres: only the floor differs)."""

    vertices: np.ndarray  # (V, 3) the template shaped by the betas: the bind pose
    faces: np.ndarray  # (F, 3)
    weights: np.ndarray  # (V, J) skin weights over all of the model's joints
    joints: np.ndarray  # (J, 3) regressed from `vertices`; the first 22 are the HumanML3D body
    parents: np.ndarray  # (J,) parents come before their children


GENDERS = ("neutral", "male", "female")
_FIX = "set the SMPL Models folder in the MotionLCM add-on preferences (or --smpl-dir) to a folder holding them."


def find_model_file(model_path: str | Path, gender: str = "neutral", model_type: str | None = None) -> tuple[Path, str]:
    """The model file and its type ('smplx' or 'smpl'). A file's name gives its type (`model_type` when it does not);
    a folder, or its smplx/ or smpl/ subfolder (smplx.create's layout), is searched for SMPLX_<GENDER>.npz|.pkl,
    preferred, then SMPL_<GENDER>.pkl or the SMPL download's own basicmodel_<g>_lbs_*.pkl."""
    path = Path(model_path).expanduser()
    if gender not in GENDERS:
        raise SmplModelError(f"SMPL gender must be one of {', '.join(GENDERS)}, got {gender!r}.")
    if path.is_file():
        upper = path.name.upper()
        kind = "smplx" if upper.startswith("SMPLX") else "smpl" if upper.startswith(("SMPL", "BASICMODEL")) \
            else model_type
        if kind not in ("smpl", "smplx"):
            raise SmplModelError(f"cannot tell whether {path.name} is an SMPL or SMPL-X model: "
                                 "name it SMPL_<GENDER>.pkl or SMPLX_<GENDER>.npz.")
        return path, kind
    if not path.is_dir():
        raise SmplModelError(f"SMPL model folder not found: {path}; {_FIX}")
    patterns = [(f"smplx_{gender}.npz", "smplx"), (f"smplx_{gender}.pkl", "smplx"), (f"smpl_{gender}.pkl", "smpl"),
                (f"basicmodel_{gender if gender == 'neutral' else gender[0]}_lbs_*.pkl", "smpl")]
    for folder in (path, path / "smplx", path / "smpl"):
        try:
            files = sorted(folder.iterdir()) if folder.is_dir() else []
        except OSError as exc:
            raise SmplModelError(f"cannot read the SMPL model folder {folder}: {exc.strerror}.") from None
        for pattern, kind in patterns:
            found = [f for f in files if fnmatch.fnmatch(f.name.lower(), pattern) and f.is_file()]
            if found:
                return found[-1], kind  # the newest version of the SMPL download sorts last
    raise SmplModelError(f"no {gender} SMPL/SMPL-X model in {path}: looked for SMPLX_{gender.upper()}.npz|.pkl, "
                         f"SMPL_{gender.upper()}.pkl and basicmodel_*_lbs_*.pkl there and in its smplx/ and smpl/ "
                         f"subfolders; {_FIX}")


def load_model(model_path: str | Path, gender: str = "neutral", betas: np.ndarray | None = None,
               model_type: str | None = None) -> ModelBody:
    """A user's SMPL / SMPL-X model (folder or file) shaped by `betas`, read with the optional `smplx` package.

    The bind pose is the shaped template itself, not the model's forward pass: SMPL-X's zero hand pose is its curled
    mean hand, which would move hand vertices away from the rest the skin weights were made for."""
    path, kind = find_model_file(model_path, gender, model_type)
    try:
        import smplx  # optional: the model files are licensed and user-supplied
    except ImportError:
        raise SmplModelError("reading SMPL/SMPL-X models needs the optional 'smplx' package: install it into the "
                             "backend's environment (pip install smplx, or the backend's [smpl] extra).") from None
    betas = np.zeros(0) if betas is None else np.asarray(betas, dtype=np.float64).reshape(-1)
    if not np.isfinite(betas).all():
        raise SmplModelError(f"SMPL betas must be finite, got {betas.tolist()}.")
    options = {"ext": path.suffix[1:]} if kind == "smplx" else {}
    try:
        model = {"smpl": smplx.SMPL, "smplx": smplx.SMPLX}[kind](
            str(path), gender=gender, num_betas=max(betas.size, NUM_BETAS), **options)
    except Exception as exc:  # a user's file: whatever is wrong with it, say which file and what
        hint = ("; it was saved with chumpy: use the chumpy-free version of the model files"
                if "chumpy" in str(exc) else "")
        raise SmplModelError(f"could not read the {kind.upper()} model {path}: {type(exc).__name__}: {exc}{hint}.") \
            from None
    dirs = model.shapedirs.double().numpy()
    if betas.size > dirs.shape[-1]:
        raise SmplModelError(f"{path.name} has {dirs.shape[-1]} shape directions, got {betas.size} betas.")
    vertices = model.v_template.double().numpy() + dirs[..., :betas.size] @ betas
    regressor = model.J_regressor.double().numpy()
    return ModelBody(vertices, np.asarray(model.faces, dtype=np.int64), model.lbs_weights.double().numpy(),
                     regressor @ vertices, model.parents.numpy().astype(np.int64))


def skeleton_from_model(model_path: str | Path, model_type: str | None = None, gender: str = "neutral",
                        betas: np.ndarray | None = None) -> RestSkeleton:
    """Rest joints of a user's SMPL / SMPL-X model (folder or file, see `find_model_file`), on the floor like the
    default skeleton."""
    return RestSkeleton(place_on_floor(load_model(model_path, gender, betas, model_type).joints[:NUM_JOINTS]))
