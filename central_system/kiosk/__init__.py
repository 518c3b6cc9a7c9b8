"""The kiosk as a client of the server's API (no Qt here: the screens live in ``views``).

``api_backend.ApiBackend`` offers the screens the calls they make (the same names
as the in-process ``KioskBackend``), each one an HTTP call to the active server,
and feeds the server's event stream to the bridge.
"""
