"""The PySide6 window: models over the store, docks, the main window. The only package that imports QtWidgets."""
