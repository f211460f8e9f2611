"""The one error type for a bad request item; handlers turn it into a 4xx JSON answer."""


class InputError(ValueError):
    """A request the model cannot answer. `status` is the HTTP code the client gets."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status
