"""The one exception type users catch: every misuse of the library raises it with a message naming the culprit."""


class RefimplError(ValueError):
    """Raised for invalid options, targets that match nothing, double application, incompatible adapter files..."""
