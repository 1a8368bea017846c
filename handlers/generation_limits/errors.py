"""The refusal of a limit change where no limit is enabled: code ``not_enabled``."""

from __future__ import annotations

from events import ThreadlogError


class LimitNotEnabled(ThreadlogError):
    """The deployment runs without a generation limit
    (``THREADLOG_GENERATION_PARALLELISM`` unset): a limit set now would not be enforced,
    so it is refused. Start the handler processes with the setting instead."""

    code = "not_enabled"
