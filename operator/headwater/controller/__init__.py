"""The operator process: settings, the runtime that owns every loop, kopf handlers, entry points."""
