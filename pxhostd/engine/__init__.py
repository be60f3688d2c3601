"""The reconcile engine: decide, journal, apply, roll back, recover."""
