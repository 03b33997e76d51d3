"""The closed vocabularies of the desk."""

from __future__ import annotations

from enum import StrEnum


class CaseKind(StrEnum):
    claim = "claim"
    complaint = "complaint"
    inquiry = "inquiry"

    @property
    def prefix(self) -> str:
        """Prefix of the human-readable case number (``CLM-2026-000123``)."""
        return {"claim": "CLM", "complaint": "CMP", "inquiry": "INQ"}[self.value]


class Channel(StrEnum):
    phone = "phone"
    email = "email"
    webhook = "webhook"
    app = "app"
    counter = "counter"
    letter = "letter"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class ContactChannel(StrEnum):
    """How a customer prefers to be told: a message channel, not an intake channel."""

    email = "email"
    sms = "sms"
    phone = "phone"
    letter = "letter"


class StaffRole(StrEnum):
    handler = "handler"
    supervisor = "supervisor"
    manager = "manager"


class StepStatus(StrEnum):
    open = "open"
    paused = "paused"
    done = "done"
    cancelled = "cancelled"


class OutboxStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    dead = "dead"
    blocked = "blocked"
    held = "held"
    """Not sent yet, kept with its values: the wording check refused it or the desk lacks a detail it quotes
    (``claimflow outbox release`` checks it again)."""
    withdrawn = "withdrawn"
    """Held, and no longer true when it could be sent: a letter about a decision still to come (acknowledgement,
    progress notice, extension, missing documents) whose case was decided meanwhile. Kept, never sent."""
    folded = "folded"
    """Carried by another message (``Outbox.folded_into``, whose status says whether it left): a reader's waiting
    notices of one kind leave as one digest (``MessageSpec.digest``). Kept, never sent on its own."""


class Decision(StrEnum):
    approved = "approved"
    rejected = "rejected"
