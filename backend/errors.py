"""Errors with specific, human-readable messages. Everything the engine refuses raises one of these."""


class MotionLCMError(Exception):
    """Base class; `code` is the stable identifier the server sends to the add-on."""

    code = "error"


class CheckpointError(MotionLCMError):
    """A checkpoint file is missing, corrupted, unsafe (pickled code) or does not fit the architecture."""

    code = "bad_checkpoint"


class TextEncoderMismatch(MotionLCMError):
    """The text encoder's embedding size or identity differs from what the checkpoint was trained with."""

    code = "text_encoder_mismatch"


class InvalidRequest(MotionLCMError):
    """Bad user input: prompt, lengths, controls, steps, guidance."""

    code = "invalid_request"
