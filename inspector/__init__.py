"""sockscope inspector: decoders, filters, store (Qt-free) and the PySide6 window."""
