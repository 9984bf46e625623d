"""The package's error types, in a module without heavy imports (the command line's start-up
check raises and reports them before torch loads). Each message is one line; the command line
ends with ``error: <message>`` (`poseaug_pl.cli`)."""


class DataError(ValueError):
    """Bad input data. The message is one line naming the file and what is wrong."""


class ConfigError(ValueError):
    """A config value of the wrong type or outside its allowed values."""


class TrainingDiverged(RuntimeError):
    """Training diverged: a stepped loss became NaN/inf or exceeded 1e6, a validation MPJPE
    exceeded 10 m, or a weight became NaN/inf (`health`); the message names what and when."""


class WriteFailed(RuntimeError):
    """An output file could not be written (disk full, read-only folder, no permission).

    Raised by `utils.atomic_output` and the checkpoint plugin (`checkpoint_io`) after the
    partial file is removed; the previous file of that name, if any, is unchanged. The message
    (one line) names the file and the reason. The command line ends with it and exit code 1.
    """
