"""Domain model: SQLModel tables and the pure rules (lifecycles, calendars, SLA arithmetic, routing)."""
