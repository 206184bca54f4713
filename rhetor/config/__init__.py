"""The shipped configuration data (tasks.json) and the live reload of the configuration files (rhetor.config.reload).
Knows nothing of HTTP."""
