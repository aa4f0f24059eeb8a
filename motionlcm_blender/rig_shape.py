"""Bone mapping by shape, for rigs whose bone names no preset knows (`Bone`, `Bone.001`...).

Pure numpy on the rest pose (bone heads in armature space) and the hierarchy:
1. Limb pairs: a bone whose two children start subtrees of the same size and length (within LIMB_TOLERANCE),
   each at least MIN_LIMB of the rig's size. The two longest pairs under different bones are the legs and arms.
2. Legs or arms: the pair whose bone is the ancestor of the other's is the legs' (Mixamo: the hips carry the legs
   and the spine); when neither is (Character Creator: Hip carries Pelvis with the legs, and Waist with the
   spine), the arms are the pair farther from the two bones' common ancestor, which is the pelvis.
3. Spine: the bones from the pelvis to the arms' bone (spine3); the first between is spine1, the middle one
   spine2. Neck and head: the arms' bone's other child chain, which ends at the head, unless its last bone is a
   head-top end (a leaf starting at the top of the rig, HEAD_TOP above its parent, as Mixamo's HeadTop_End).
4. Each limb chain follows the child with the largest subtree and ends at the first bone with three or more
   children (a hand) or at a leaf. Legs: the hip is the first bone that points down (cosine with the down
   direction, pelvis to spine3 reversed, above DOWN_COSINE: skips CMU-like LHipJoint bones); knee and ankle are
   the joints nearest KNEE and ANKLE of the chain's length from the hip; the foot is the next joint. Arms: a
   first bone shorter than COLLAR of the chain is the collar; the wrist is the chain's last bone, the elbow the
   joint nearest the middle of shoulder to wrist (twist bones in between are skipped by that).
5. Left is up x forward, forward being the feet's direction (ankle to foot), else the armature's -Y (Blender's
   convention) or +Z for a Y-up armature.
The result is a RigMapping like a preset's (preset "shape"); Auto-detect falls back to it when no preset maps
the rig (rig_transfer.mapping_of).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .rig_mapping import REQUIRED_JOINTS, RigMapping, RigMappingError

SHAPE = "shape"  # the mapping's name where presets are named
LIMB_TOLERANCE = 0.15  # relative difference of a pair's two subtree lengths
MIN_LIMB = 0.15  # a limb's length at least this fraction of the rig's size (fingers, eyes and toes are shorter)
DOWN_COSINE = 0.85
KNEE, ANKLE = 0.41, 0.83  # of the hip-to-toe-tip chain (SMPL proportions)
COLLAR = 0.38  # a first arm bone shorter than this fraction of collar-to-wrist is a collar (a clavicle is about
#               a quarter of it; an upper arm, when there is no clavicle, half of shoulder-to-wrist)
HEAD_TOP = 0.09  # a leaf at the top of the rig this far (fraction of its size) above its parent is a head-top end


def _children(parents: Sequence[int]) -> list[list[int]]:
    children: list[list[int]] = [[] for _ in parents]
    for b, p in enumerate(parents):
        if p >= 0:
            children[p].append(b)
    return children


def _subtrees(parents: Sequence[int], children: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in parents]
    for b in reversed(_order(parents)):
        out[b] = [b] + [d for c in children[b] for d in out[c]]
    return out


def _order(parents: Sequence[int]) -> list[int]:
    """Bones parents first."""
    depth = []
    for b in range(len(parents)):
        d, p = 0, parents[b]
        while p >= 0:
            d, p = d + 1, parents[p]
        depth.append(d)
    return sorted(range(len(parents)), key=lambda b: depth[b])


def _ancestors(parents: Sequence[int], b: int) -> list[int]:
    out = []
    while b >= 0:
        out.append(b)
        b = parents[b]
    return out


def _chain_length(heads: np.ndarray, bones: list[int], parents: Sequence[int]) -> float:
    """Sum of the distances from each bone's parent head to its head, over a subtree (its spread of joints)."""
    return float(sum(np.linalg.norm(heads[b] - heads[parents[b]]) for b in bones if parents[b] >= 0))


def _limb_pairs(parents: Sequence[int], children: list[list[int]], heads: np.ndarray, subtree: list[list[int]],
                size: float) -> list[tuple[float, int, int, int]]:
    """(length, hub, first, second) for every bone whose two children start matching limbs."""
    pairs = []
    for hub, kids in enumerate(children):
        length = {c: _chain_length(heads, subtree[c], parents) + np.linalg.norm(heads[c] - heads[hub]) for c in kids}
        for i, a in enumerate(kids):
            for b in kids[i + 1:]:
                la, lb = length[a], length[b]
                if len(subtree[a]) != len(subtree[b]) or min(la, lb) < MIN_LIMB * size:
                    continue
                if abs(la - lb) <= LIMB_TOLERANCE * max(la, lb):
                    pairs.append(((la + lb) / 2, hub, a, b))
    return sorted(pairs, reverse=True)


def _chain(start: int, children: list[list[int]], subtree: list[list[int]]) -> list[int]:
    """From `start` down the child with the largest subtree, to a hand (3+ children) or a leaf."""
    out = [start]
    while True:
        kids = children[out[-1]]
        if not kids or len(kids) >= 3:
            return out
        out.append(max(kids, key=lambda c: len(subtree[c])))


def _nearest(chain: list[int], arc: np.ndarray, fraction: float, after: int) -> int:
    """Index in `chain` (past `after`) of the joint whose arc-length fraction is nearest `fraction`."""
    candidates = range(after + 1, len(chain))
    return min(candidates, key=lambda i: abs(arc[i] - fraction)) if candidates else len(chain) - 1


def _arc(heads: np.ndarray, chain: list[int]) -> np.ndarray:
    steps = np.linalg.norm(np.diff(heads[chain], axis=0), axis=-1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    return arc / max(arc[-1], 1e-9)


def map_by_shape(names: Sequence[str], parents: Sequence[int], heads: np.ndarray) -> RigMapping:
    """The mapping the rest pose (bone heads, armature space) implies (see the module docstring); raises
    RigMappingError saying what it did not find."""
    heads = np.asarray(heads, dtype=np.float64)
    if len(names) != len(parents) or heads.shape != (len(names), 3):
        raise ValueError("names, parents and heads (N, 3) must describe the same bones")
    size = float(np.ptp(heads, axis=0).max()) if len(heads) else 0.0
    children = _children(parents)
    subtree = _subtrees(parents, children)
    pairs = _limb_pairs(parents, children, heads, subtree, size)
    hubs: list[tuple[float, int, int, int]] = []
    for pair in pairs:  # the two longest pairs under different bones, neither inside the other's limbs
        if all(pair[1] != h[1] and pair[1] not in subtree[h[2]] + subtree[h[3]] for h in hubs):
            hubs.append(pair)
        if len(hubs) == 2:
            break
    if len(hubs) < 2:
        raise RigMappingError("Mapping by shape found no two pairs of matching limbs (legs and arms) in the "
                              "armature's hierarchy.")
    (_, hub_a, *_), (_, hub_b, *_) = hubs
    up_a, up_b = _ancestors(parents, hub_a), _ancestors(parents, hub_b)
    pelvis = next(b for b in up_a if b in up_b)
    if pelvis == hub_b or (pelvis != hub_a and len(up_a) > len(up_b)):
        hubs.reverse()
    (_, leg_hub, leg_a, leg_b), (_, arm_hub, arm_a, arm_b) = hubs
    up_arms = _ancestors(parents, arm_hub)
    spine = list(reversed(up_arms[:up_arms.index(pelvis)]))
    up = heads[arm_hub] - heads[pelvis]
    up /= max(np.linalg.norm(up), 1e-9)
    bones: dict[str, int] = {"pelvis": pelvis, "spine3": arm_hub}
    between = spine[:-1]  # bones between the pelvis and spine3
    if between:
        bones["spine1"] = between[0]
    if len(between) >= 2:
        bones["spine2"] = between[len(between) // 2]
    others = [c for c in children[arm_hub] if c not in (arm_a, arm_b)]
    if others:
        neck = _chain(max(others, key=lambda c: len(subtree[c])), children, subtree)
        bones["neck"] = neck[0]
        last = neck[-1]
        head_top = len(neck) >= 3 and float(heads[last] @ up) >= float(np.max(heads @ up)) - 1e-6 \
            and float((heads[last] - heads[neck[-2]]) @ up) > HEAD_TOP * size
        if len(neck) >= 2:
            bones["head"] = neck[-2] if head_top else last
    legs = {}
    for start in (leg_a, leg_b):
        chain = _chain(start, children, subtree)
        hip = next((i for i in range(len(chain) - 1)
                    if np.dot(_unit(heads[chain[i + 1]] - heads[chain[i]]), -up) > DOWN_COSINE), 0)
        leg = chain[hip:]
        arc = _arc(heads, leg)
        knee = _nearest(leg, arc, KNEE, 0)
        ankle = _nearest(leg, arc, ANKLE, knee)
        legs[start] = {"hip": leg[0], "knee": leg[knee], "ankle": leg[ankle]}
        if ankle + 1 < len(leg):
            legs[start]["foot"] = leg[ankle + 1]
    arms = {}
    for start in (arm_a, arm_b):
        chain = _chain(start, children, subtree)
        arm = {}
        first = np.linalg.norm(heads[chain[1]] - heads[chain[0]]) if len(chain) > 1 else 0.0
        if len(chain) >= 4 and first < COLLAR * np.linalg.norm(heads[chain[-1]] - heads[chain[0]]):
            arm["collar"], chain = chain[0], chain[1:]
        arm["shoulder"], arm["wrist"] = chain[0], chain[-1]
        if len(chain) >= 3:
            arm["elbow"] = chain[_nearest(chain[:-1], _arc(heads, chain)[:-1], 0.5, 0)]
        arms[start] = arm
    forward = _forward(heads, up, legs)
    left = np.cross(up, forward)
    for pair, parts in ((legs, ("hip", "knee", "ankle", "foot")), (arms, ("collar", "shoulder", "elbow", "wrist"))):
        first, second = pair
        side_of_first = np.dot(heads[next(iter(pair[first].values()))] - heads[pelvis], left)
        sides = {"left": first, "right": second} if side_of_first > 0 else {"left": second, "right": first}
        for side, start in sides.items():
            for part in parts:
                if part in pair[start]:
                    bones[f"{side}_{part}"] = pair[start][part]
    named = {joint: names[b] for joint, b in bones.items()}
    missing = tuple(j for j in REQUIRED_JOINTS if j not in named)
    if missing:
        raise RigMappingError(f"Mapping by shape found no bone for {', '.join(missing)}.")
    return RigMapping(SHAPE, named, dict(named), names[pelvis], (), ())


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _forward(heads: np.ndarray, up: np.ndarray, legs: dict[int, dict[str, int]]) -> np.ndarray:
    feet = [heads[leg["foot"]] - heads[leg["ankle"]] for leg in legs.values() if "foot" in leg]
    if feet:
        f = np.mean(feet, axis=0)
    else:  # Blender's convention: characters face -Y (a Y-up armature, as FBX imports have: +Z)
        f = np.array([0.0, 0.0, 1.0]) if abs(up[1]) > abs(up[2]) else np.array([0.0, -1.0, 0.0])
    f = f - np.dot(f, up) * up
    return _unit(f)
