"""geoqueue's HTTP API and job pages: `python -m api` (FastAPI on uvicorn), for producer apps in any
language. It submits through the same code path as the Python client (GeoQueue.submit)."""
