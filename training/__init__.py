"""The bundled MotionLCM trainer: data preparation, the four training stages, evaluation."""
