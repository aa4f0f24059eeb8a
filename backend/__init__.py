"""MotionLCM engine: text and trajectory to HumanML3D motion, and motion to animatable skeletons.

The add-on (``motionlcm_blender``) never imports this package; it talks to ``backend.server``.
"""

__version__ = "0.1.0"
