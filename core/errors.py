"""The error a user can act on: which setting is wrong, and why. Below every other module of core."""


class ConfigError(ValueError):
    """A setting that cannot be used: `field` names it (`target.learning_rate` in a pipeline), `message` says why.
    Its text is `"<field>: <message>"`: the command line prints it as one line, the Train page beside the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message

    def within(self, prefix: str) -> "ConfigError":
        return ConfigError(f"{prefix}.{self.field}", self.message)
