"""Captions from content/style labels (the Bandai-Namco libraries, or a user's own labelled clips).

Labelled mocap has no free text, so captions are built from several natural phrasings per label
with synonyms. Direction and speed words are added only where the measured root trajectory
supports them, so a caption never claims a turn the motion does not make. The output is
deterministic given the seed and the clip name.
"""

from __future__ import annotations

import random

import numpy as np

from backend.motion.skeleton import FPS

SUBJECTS = ("a person", "someone", "a man", "a woman", "the person", "a figure")

# Verb phrases per content label; "{side}" is filled with left/right where the label has one.
CONTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "walk": ("walks", "is walking", "takes a few steps", "strolls along"),
    "walk-turn-left": ("walks and turns left", "walks while turning to the left", "walks, curving to the left"),
    "walk-turn-right": ("walks and turns right", "walks while turning to the right", "walks, curving to the right"),
    "run": ("runs", "is running", "jogs", "runs along"),
    "wave-both-hands": ("waves both hands", "waves with both arms", "raises both hands and waves them"),
    "wave-left-hand": ("waves the left hand", "waves with the left arm", "lifts the left hand and waves"),
    "wave-right-hand": ("waves the right hand", "waves with the right arm", "lifts the right hand and waves"),
    "raise-up-both-hands": ("raises both hands", "lifts both arms up", "puts both hands up in the air"),
    "raise-up-left-hand": ("raises the left hand", "lifts the left arm up", "puts the left hand up"),
    "raise-up-right-hand": ("raises the right hand", "lifts the right arm up", "puts the right hand up"),
    # Dataset 1 (its contents beyond dataset 2's).
    "walk-back": ("walks backwards", "backs up", "walks in reverse", "steps backwards"),
    "walk-left": ("walks sideways to the left", "sidesteps to the left", "steps sideways to the left",
                  "moves to the left with side steps"),
    "walk-right": ("walks sideways to the right", "sidesteps to the right", "steps sideways to the right",
                   "moves to the right with side steps"),
    "dash": ("dashes", "sprints", "runs at full speed", "races forward"),
    "bow": ("bows", "bows politely", "takes a bow", "bends forward in a bow"),
    "bye": ("waves goodbye", "waves goodbye with one hand", "says goodbye with a wave"),
    "byebye": ("waves goodbye with both hands", "waves both hands to say goodbye", "says bye-bye with both hands"),
    "guide": ("guides someone with a gesture", "shows the way with the hand", "points the way"),
    "call": ("calls someone over", "beckons", "waves someone to come closer"),
    "punch": ("punches", "throws a punch", "punches forward"),
    "kick": ("kicks", "kicks with the leg", "does a kick"),
    "slash": ("slashes", "makes a slashing motion", "swings an arm like a sword"),
    "respond": ("responds with a gesture", "reacts", "answers with a gesture"),
    "dance-short": ("dances", "does a dance", "dances to music"),
    "dance-long": ("dances", "does a dance", "dances to music"),
}

# Paraphrases never used in training captions (a fifth of all phrasings or more): the prompts that test whether
# the model understands an action rather than its training sentences.
HELD_OUT_CONTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "walk": ("ambles forward",),
    "walk-turn-left": ("veers to the left while walking",),
    "walk-turn-right": ("veers to the right while walking",),
    "run": ("moves at a running pace",),
    "wave-both-hands": ("greets with both arms waving overhead",),
    "wave-left-hand": ("greets by waving the left hand",),
    "wave-right-hand": ("greets by waving the right hand",),
    "raise-up-both-hands": ("holds both arms up high",),
    "raise-up-left-hand": ("holds the left arm up high",),
    "raise-up-right-hand": ("holds the right arm up high",),
    "walk-back": ("retreats step by step",),
    "walk-left": ("shuffles sideways to the left",),
    "walk-right": ("shuffles sideways to the right",),
    "dash": ("bolts ahead at top speed",),
    "bow": ("bends at the waist to greet someone",),
    "bye": ("waves farewell",),
    "byebye": ("waves farewell with both arms",),
    "guide": ("gestures to show someone where to go",),
    "call": ("signals someone to come",),
    "punch": ("strikes with a fist",),
    "kick": ("swings a leg in a kick",),
    "slash": ("cuts through the air with a sword-like swing",),
    "respond": ("gestures in reply",),
    "dance-short": ("moves rhythmically to a beat",),
    "dance-long": ("moves rhythmically to a beat",),
}
# Contents whose label already says which way the body travels: no direction word is added to them.
_DIRECTED = ("walk-back", "walk-left", "walk-right")

# Manner phrases per style label; an empty string means "say nothing about the style".
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "active": ("energetically", "in an active way", "with a lot of energy", "briskly"),
    "elderly": ("like an elderly person", "in an old, careful way", "the way an elderly person would"),
    "exhausted": ("in an exhausted way", "wearily", "as if exhausted", "in a tired manner"),
    "feminine": ("in a feminine way", "with a feminine style", "in a feminine manner"),
    "masculine": ("in a masculine way", "with a masculine style", "in a masculine manner"),
    "normal": ("", "normally", "in a normal way", "in an ordinary manner"),
    "youthful": ("in a youthful way", "with youthful energy", "like a young person", "playfully"),
    # Dataset 1 (its styles beyond dataset 2's; proud, childish and giant are its held-out styles).
    "happy": ("happily", "in a happy way", "cheerfully"),
    "sad": ("sadly", "in a sad way", "looking sad"),
    "angry": ("angrily", "in an angry way", "furiously"),
    "proud": ("proudly", "in a proud way", "with pride"),
    "not-confident": ("timidly", "without confidence", "hesitantly"),
    "masculinity": ("in a masculine way", "with a masculine style", "in a masculine manner"),
    "childish": ("like a child", "in a childish way", "like a little kid"),
    "old": ("like an old person", "in an old, careful way", "the way an old person would"),
    "tired": ("tiredly", "in a tired way", "as if tired"),
    "musical": ("rhythmically", "in a musical way", "as in a musical"),
    "giant": ("like a giant", "with heavy, giant steps", "the way a giant would"),
    "chimpira": ("like a street thug", "with a thuggish swagger", "in a delinquent style"),
}

TEMPLATES = (
    "{subject} {action} {manner}",
    "{subject} {action} {direction} {manner}",
    "{subject} {manner_front} {action} {direction}",
)
_FRONT_OK = {"energetically", "wearily", "normally", "briskly", "playfully", "happily", "sadly", "angrily",
             "proudly", "timidly", "hesitantly", "tiredly", "cheerfully", "furiously", "rhythmically"}


def describe_trajectory(joints: np.ndarray, fps: float = FPS) -> dict[str, str | None]:
    """Direction and speed words from the pelvis path of (T, 22, 3) joints (HumanML3D space,
    facing +Z at frame 0). Unsupported words are None."""
    path = joints[:, 0, [0, 2]].astype(np.float64)
    steps = np.diff(path, axis=0)
    step_len = np.linalg.norm(steps, axis=-1)
    length = float(step_len.sum())
    duration = max(len(path) - 1, 1) / fps
    result: dict[str, str | None] = {"direction": None, "speed": None}
    if length < 0.5:  # essentially in place
        return result
    moving = steps[step_len > 1e-3]
    # Heading of the path, measured from +Z towards +X (the character's left): positive = left turn.
    heading = np.unwrap(np.arctan2(moving[:, 0], moving[:, 1]))
    turn = float(np.degrees(heading[-1] - heading[0])) if len(heading) > 1 else 0.0
    if abs(turn) >= 300:
        result["direction"] = "in a circle"
    elif turn >= 45:
        result["direction"] = "turning left"
    elif turn <= -45:
        result["direction"] = "turning right"
    elif path[-1, 1] - path[0, 1] > 0.5 and abs(path[-1, 0] - path[0, 0]) < path[-1, 1] - path[0, 1]:
        result["direction"] = "forward"
    elif path[0, 1] - path[-1, 1] > 0.5 and abs(path[-1, 0] - path[0, 0]) < path[0, 1] - path[-1, 1]:
        result["direction"] = "backward"
    speed = length / duration
    if speed > 2.5:
        result["speed"] = "quickly"
    elif speed < 0.6:
        result["speed"] = "slowly"
    return result


def _content_phrases(content: str) -> tuple[str, ...]:
    if content in CONTENT_PHRASES:
        return CONTENT_PHRASES[content]
    words = content.replace("-", " ").replace("_", " ")
    return (f"does a {words} motion", f"performs a {words} movement")


def _style_phrases(style: str | None) -> tuple[str, ...]:
    if not style:
        return ("",)
    return STYLE_PHRASES.get(style, (f"in a {style.replace('-', ' ')} way", f"with a {style.replace('-', ' ')} style"))


def _direction_phrase(content: str, trajectory: dict[str, str | None]) -> str:
    direction, speed = trajectory.get("direction"), trajectory.get("speed")
    words = []
    # The label already says which way a turn or a side/back walk goes; do not repeat or contradict it.
    if direction and content not in _DIRECTED and not ("turn" in content and "turning" in direction):
        words.append({"forward": "forward", "backward": "backwards", "turning left": "while turning left",
                      "turning right": "while turning right", "in a circle": "in a circle"}[direction])
    if speed:
        words.append(speed)
    return " ".join(words)


def captions_from_labels(clip: str, content: str, style: str | None, trajectory: dict[str, str | None],
                         seed: int = 0, count: int = 3, held_out: bool = False) -> list[str]:
    """`count` distinct captions for one clip (fewer if the label has fewer phrasings). `held_out`: from the
    paraphrases kept out of training instead (evaluation prompts)."""
    rng = random.Random(f"{seed}:{clip}")
    direction = _direction_phrase(content, trajectory)
    actions = HELD_OUT_CONTENT_PHRASES.get(content, ()) if held_out else _content_phrases(content)
    if not actions:
        raise ValueError(f"no held-out paraphrase is written for the content {content!r}")
    captions: list[str] = []
    for _ in range(count * 8):  # enough draws to find `count` distinct phrasings
        manner = rng.choice(_style_phrases(style))
        template = rng.choice(TEMPLATES)
        if "{manner_front}" in template and manner not in _FRONT_OK:
            template = TEMPLATES[1]
        text = template.format(subject=rng.choice(SUBJECTS), action=rng.choice(actions),
                               manner=manner, manner_front=manner, direction=direction)
        text = " ".join(text.split())
        if text not in captions:
            captions.append(text)
        if len(captions) == count:
            break
    return captions


def parse_bandai_name(stem: str) -> tuple[str, str] | None:
    """`dataset-2_walk-turn-left_exhausted_012` -> ("walk-turn-left", "exhausted"); None if unlike."""
    parts = stem.split("_")
    if len(parts) < 4:
        return None
    return parts[-3], parts[-2]
