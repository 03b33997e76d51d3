"""The application shell: settings, database engine, CLI."""
