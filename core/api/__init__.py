"""The API machinery, apart from any one API's authentication.

`errors` is the one exception handler (every error is `{"error": {"type", "code", "message", "param"}}`), named by
`REST_FRAMEWORK["EXCEPTION_HANDLER"]` as `core.api.exception_handler`.
"""

from .errors import error_body, exception_handler

__all__ = ["error_body", "exception_handler"]
