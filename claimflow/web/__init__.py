"""The desk's web app (FastAPI): ``app`` builds it; ``http`` holds what every endpoint shares (problems, checks on
the raw request); ``intake`` is the signed webhook API; ``feedback`` the feedback API and the survey page; ``pages``
the public pages; ``templates/`` and ``static/`` their HTML and styles."""
