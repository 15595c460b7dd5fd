"""The alliance's writes, one module per concern; the rest of the project calls the names exported here.

clearing  inter-bank clearing: netting a day per currency, settlement instructions through the clearing channel

See docs/clearing.md.
"""

from .clearing import (
    ClearingReport,
    clearing_daily,
    clearing_due,
    clearing_run,
    instructions_poll,
    instructions_send,
    per_minor,
)

__all__ = [
    "ClearingReport",
    "clearing_daily",
    "clearing_due",
    "clearing_run",
    "instructions_poll",
    "instructions_send",
    "per_minor",
]
