"""MotionLCM engine: text and trajectory to HumanML3D motion, and motion to animatable skeletons.

The add-on (``motionlcm_blender``) never imports this package; it talks to ``backend.serving.server``.
"""

import os

# OpenMP threads that finish a parallel region wait for the next one. libgomp (PyTorch's OpenMP on Linux) by
# default spins for a long time, and when the cores are shared (Blender, other processes) every matrix product
# then waits for a descheduled partner thread: on a loaded 2-core machine one-step controlled generation took
# 0.5-3.6 s instead of ~0.15 s. Passive waiting (sleep at once) never stalls like that, but waking a sleeping
# thread costs tens of microseconds per parallel region: on an idle 2-core VM generation is ~35% slower than with
# spinning (~130 ms instead of ~90 ms). We take the bounded case; OMP_WAIT_POLICY=ACTIVE in the environment (an
# explicit setting wins) suits a machine reserved for the engine. libgomp reads the variable once, when torch
# loads it, so it must be set before `import torch`: importing `backend` first does that.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
