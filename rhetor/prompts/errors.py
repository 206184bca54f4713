"""Template errors, as branches of the one tree in rhetor/errors.py (each is a RhetorError with its status):

    RhetorError
    ├── InvalidRequestError                400
    │   ├── TemplateSyntaxInvalid          400  the text does not compile (or uses include/import/extends)
    │   └── TemplateRenderError            400  rendering failed, or the sandbox refused (type says which)
    ├── TemplateNotFoundError              404  no template (or version) by that id
    └── TemplateConflictError              409  creating an id that exists

Knows nothing of HTTP, storage or Jinja.
"""

from __future__ import annotations

from rhetor.errors import InvalidRequestError, RhetorError


class TemplateSyntaxInvalid(InvalidRequestError):
    type = "template_syntax_error"

    def __init__(self, message: str, *, param: str = "text") -> None:
        super().__init__(message, param=param)


class TemplateRenderError(InvalidRequestError):
    type = "template_render_error"

    def __init__(self, message: str, *, error_type: str | None = None, param: str | None = "variables") -> None:
        super().__init__(message, param=param)
        if error_type:
            self.type = error_type


class TemplateNotFoundError(RhetorError):
    status = 404
    type = "not_found"


class TemplateConflictError(RhetorError):
    status = 409
    type = "conflict"


__all__ = ["TemplateConflictError", "TemplateNotFoundError", "TemplateRenderError", "TemplateSyntaxInvalid"]
