"""The Faust application, its agents and web views, the CLI and the one settings object."""
