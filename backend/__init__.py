"""MotionLCM engine: text and trajectory to HumanML3D motion, and motion to animatable skeletons.

The add-on (``motionlcm_blender``) never imports this package; it talks to ``backend.server``.
"""

import os

# OpenMP threads that finish a parallel region wait for the next one. libgomp (PyTorch's OpenMP on Linux) by
# default spins for a long time; when the cores are shared (Blender, other processes) a spinning thread steals
# the core its partner needs, and every matrix product waits for a descheduled thread. On a loaded 2-core
# machine that made one-step controlled generation 4-8x slower (~1-2 s instead of ~0.2 s). Passive waiting costs
# a few microseconds per region on an idle machine. The variable is read once, when torch loads libgomp, so it
# must be set before `import torch`: importing `backend` first does that. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
