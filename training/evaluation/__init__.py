"""Evaluation: metric functions (OmniControl / MotionLCM definitions) and the `motionlcm-eval` report."""
