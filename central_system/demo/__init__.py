"""``consultease demo``: the whole system with no setup, and its scripted scenario.

``environment.py`` starts the demo's world (broker, temporary data directory, the
central system as a server child, demo data over the API, simulated desks);
``scenario.py`` drives the kiosk window through a request and its acknowledgement.
The kiosk's screens themselves live in ``central_system.views``.
"""
