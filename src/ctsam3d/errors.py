"""User-facing errors.

Every problem caused by the user's input (a file, an argument, a click) raises a
:class:`CtSam3dError` (or a subclass) whose message names the file or argument and the
problem in one line. The CLI prints that line and exits non-zero without a traceback.
"""


class CtSam3dError(Exception):
    """A problem with user input, reported as one clear line."""

    exit_code = 2


class InputError(CtSam3dError):
    """A file or folder that cannot be used (missing, unreadable, wrong shape, ...)."""


class GeometryError(CtSam3dError):
    """Spacing, direction or grid problems (non-orthonormal direction, grids differ, ...)."""


class ClickError(CtSam3dError):
    """A click or box that cannot be used (outside the image, NaN, wrong length, ...)."""


class CheckpointError(CtSam3dError):
    """A checkpoint that is corrupt, from another preset, or does not match the network."""


class OutputExistsError(CtSam3dError):
    """The output path exists and ``--overwrite`` was not given."""
