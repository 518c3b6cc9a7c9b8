"""The PySide6 kiosk. Screens call controllers only through the worker (``TaskManager``)."""
