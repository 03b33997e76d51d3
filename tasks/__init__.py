"""Work that touches the database or the outside world.

Plain functions that take the session first; flows wrap them as Prefect tasks where they use them.
"""
