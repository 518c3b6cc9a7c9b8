"""The API's shared vocabulary: pydantic schemas and errors (server, kiosk client and tests).

Nothing here imports FastAPI, Qt, paho or the database: the kiosk imports it as a
client, the server as the shape of its answers, tests as both.
"""
