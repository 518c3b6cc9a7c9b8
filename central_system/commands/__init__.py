"""Sub-commands of the ``consultease`` CLI, one module each."""
