"""The transactional outbox: every QoS >= 1 message waits here until the broker acknowledges it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class OutboxMessage(Base):
    """A message accepted for delivery and not yet acknowledged (PUBACK/PUBCOMP).

    Rows are deleted once acknowledged, so the table holds exactly the backlog.
    Rows are published in ``id`` order, which is commit order within one process.
    """

    __tablename__ = "mqtt_outbox"
    __table_args__ = (Index("ix_mqtt_outbox_topic", "topic"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    qos: Mapped[int] = mapped_column(SmallInteger)
    retain: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
