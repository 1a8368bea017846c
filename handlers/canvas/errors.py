"""Canvas errors. Every one appends nothing; replies carry the code::

    ValidationFailed (invalid_input)
    ├── InvalidPatch            invalid_patch        ops that are not RFC 6902 operations
    ├── PatchPathNotFound       patch_path_not_found an op on a path the document lacks
    ├── PatchTestFailed         patch_test_failed    a ``test`` op did not hold
    ├── UnknownElement          unknown_element      an op on an element id not in the document
    ├── SchemaViolation         schema_violation     the result breaks the canvas schema
    └── PayloadTooLarge         payload_too_large    document or patch above its limit
    ConcurrencyError (conflict)                      stale ``base_version``; details carry
                                                     ``current_version``
    RevertConflict              revert_conflict      the reverted edit's fields changed since
"""

from __future__ import annotations

from events.errors import ThreadlogError, ValidationFailed


class InvalidPatch(ValidationFailed):
    code = "invalid_patch"


class PatchPathNotFound(ValidationFailed):
    code = "patch_path_not_found"


class PatchTestFailed(ValidationFailed):
    code = "patch_test_failed"


class UnknownElement(ValidationFailed):
    code = "unknown_element"


class SchemaViolation(ValidationFailed):
    code = "schema_violation"


class RevertConflict(ThreadlogError):
    """Later edits changed what the reverted edit changed: undoing it would lose them."""

    code = "revert_conflict"
