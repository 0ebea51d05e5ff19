"""An endless loop at import: the load is bounded (interrupted) and fails with a clear error."""

while True:
    pass
