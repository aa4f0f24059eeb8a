"""Errors with specific, human-readable messages.

The rule: code that validates what comes from outside (requests, files, checkpoints, prompts) raises these coded
errors; math (features, samplers, schedulers, retargeting) raises ValueError for arrays it cannot work with, and the
doors (the CLI and the server) turn a ValueError into `InvalidRequest` with the same message (`from_value_error`)."""


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


def from_value_error(exc: ValueError) -> InvalidRequest:
    """The boundary translation of the rule above: the message stays, the code becomes `invalid_request`."""
    translated = InvalidRequest(str(exc))
    translated.__cause__ = exc
    return translated
