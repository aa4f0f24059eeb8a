"""The target skeleton: SMPL's 22 body joints with rest positions (metres, Y up, facing +Z, left = +X).

Local rotations are relative to this rest pose: a joint's global rotation G maps its rest offsets onto the posed ones.
The default rest pose is SMPL-X neutral's, from the calibration data shipped with `mannequin-x` (no licensed model
file needed). SMPL-X's native frame is already Y up, metres, facing +Z with the left side at +X (checked in the
tests: head above pelvis, toes in front of ankles, left hip at +X), so the conversion is a translation only: the
pelvis goes above the origin and the lowest joint onto the floor (y = 0), as HumanML3D places its floor.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InvalidRequest
from ..skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS

NUM_BETAS = 10


@dataclass(frozen=True)
class RestSkeleton:
    """Rest joint positions (22, 3) in HumanML3D space, SMPL order; names and parents from `backend.skeleton`."""

    joints: np.ndarray
    names: tuple[str, ...] = JOINT_NAMES
    parents: tuple[int, ...] = PARENTS

    def __post_init__(self) -> None:
        joints = np.asarray(self.joints, dtype=np.float64)
        if tuple(self.parents) != PARENTS or len(self.names) != NUM_JOINTS:
            raise InvalidRequest("a rest skeleton must have SMPL's 22-joint hierarchy (backend.skeleton.PARENTS)")
        if joints.shape != (NUM_JOINTS, 3) or not np.isfinite(joints).all():
            raise InvalidRequest(f"rest joints must be finite with shape ({NUM_JOINTS}, 3), got {joints.shape}")
        lengths = np.linalg.norm(joints[1:] - joints[list(self.parents[1:])], axis=-1)
        if (lengths < 1e-6).any():
            short = [self.names[j + 1] for j in np.flatnonzero(lengths < 1e-6)]
            raise InvalidRequest(f"rest skeleton has zero-length bones ending at: {', '.join(short)}")
        object.__setattr__(self, "joints", joints)

    @property
    def offsets(self) -> np.ndarray:
        """(22, 3) offset of each joint from its parent; the pelvis's is its rest position."""
        off = self.joints.copy()
        off[1:] -= self.joints[list(self.parents[1:])]
        return off

    @property
    def bone_lengths(self) -> np.ndarray:
        """(22,) length of the bone ending at each joint (0 for the pelvis)."""
        return np.linalg.norm(self.offsets, axis=-1) * (np.arange(NUM_JOINTS) > 0)

    @property
    def leg_length(self) -> float:
        """Hip-to-ankle length plus the pelvis-to-hip drop, averaged over sides: scales root motion."""
        return float(leg_length(self.joints[None])[0])

    def end_sites(self) -> dict[int, np.ndarray]:
        """End-site offsets for the leaves (head, wrists, feet): half their bone, continuing its direction, so
        bones imported from a BVH get a sensible length and orientation."""
        leaves = [j for j in range(NUM_JOINTS) if j not in self.parents]
        return {j: 0.5 * self.offsets[j] for j in leaves}


def leg_length(joints: np.ndarray) -> np.ndarray:
    """(T,) leg length per frame of (T, 22, 3) joints: mean over sides of |pelvis-hip|_y + |hip-knee| + |knee-ankle|."""
    total = 0.0
    for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):
        total = total + (np.abs(joints[:, 0, 1] - joints[:, hip, 1])
                         + np.linalg.norm(joints[:, knee] - joints[:, hip], axis=-1)
                         + np.linalg.norm(joints[:, ankle] - joints[:, knee], axis=-1))
    return total / 2


def floor_offset(joints: np.ndarray) -> np.ndarray:
    """What `_on_floor` subtracts from (22, 3) joints (and from a mesh bound to them)."""
    return np.array([joints[0, 0], joints[:, 1].min(), joints[0, 2]])


def _on_floor(joints: np.ndarray) -> np.ndarray:
    """Pelvis above the origin, lowest joint at y = 0."""
    return joints - floor_offset(joints)


def default_skeleton(betas: np.ndarray | None = None) -> RestSkeleton:
    """SMPL-X neutral rest joints from `mannequin-x`, optionally shaped by up to 10 betas (its `joint_dirs`)."""
    path = resources.files("mannequin") / "assets" / "smplx_calibration.npz"
    with resources.as_file(path) as p, np.load(p) as data:
        rest = data["joint_rest"][:NUM_JOINTS].astype(np.float64)
        dirs = data["joint_dirs"][:NUM_JOINTS].astype(np.float64)
    if betas is not None:
        betas = np.asarray(betas, dtype=np.float64).reshape(-1)
        if betas.size > dirs.shape[-1] or not np.isfinite(betas).all():
            raise InvalidRequest(f"betas must be at most {dirs.shape[-1]} finite values, got {betas.size}")
        rest = rest + dirs[..., :betas.size] @ betas
    return RestSkeleton(_on_floor(rest))


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
    return RestSkeleton(_on_floor(load_model(model_path, gender, betas, model_type).joints[:NUM_JOINTS]))


def fitted_skeleton(joints: np.ndarray, base: RestSkeleton | None = None) -> RestSkeleton:
    """A rest skeleton with the proportions of a clip: `base`'s rest pose conventions, the clip's median bone lengths,
    and, at joints with several children (pelvis, spine3), the clip's own attachment geometry expressed in `base`'s
    rest frame (median over frames). FK of the solved rotations on it reproduces the clip's joints."""
    from .ik import solve_global_rotations  # local: ik imports this module

    base = base or default_skeleton()
    joints = np.asarray(joints, dtype=np.float64)
    glob = solve_global_rotations(joints, base)
    parents = np.array(base.parents)
    local = np.einsum("tjba,tjb->tja", glob[:, parents[1:]], joints[:, 1:] - joints[:, parents[1:]])
    offsets = np.median(local, axis=0)
    offsets *= (np.median(np.linalg.norm(local, axis=-1), axis=0)
                / np.maximum(np.linalg.norm(offsets, axis=-1), 1e-9))[:, None]
    rest = np.zeros((NUM_JOINTS, 3))
    for j in range(1, NUM_JOINTS):
        rest[j] = rest[parents[j]] + offsets[j - 1]
    return RestSkeleton(_on_floor(rest))
