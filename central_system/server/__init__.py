"""The ConsultEase server: the central system as a network service (``consultease server``).

``central.CentralServer`` holds the role (active or standby) and, while active, the
central system; ``app.create_app`` is the FastAPI application (routers per
resource in ``routes/``, who-is-calling in ``deps``, errors in ``errors``); the
event stream is ``events``; ``leadership`` decides the active server; ``run``
serves it all with uvicorn.
"""
