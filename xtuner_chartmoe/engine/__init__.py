"""The training-engine side: XTuner/mmengine glue (start-up compatibility
fixes, hooks, running XTuner's tools, reading run logs, release guards)."""
