"""DroneMapper Cloud API client: a WebODM-style REST API (JWT auth, projects, tasks, assets).

    client = DroneMapperClient("https://dronemapper.io", user, password, token_store=store)
    project = client.create_project("Survey 42")
    task = client.create_task(project["id"], [("DJI_0001.JPG", open(path, "rb"), size), ...],
                              options={"dsm": True, "orthophoto-resolution": 2})
    client.get_task(project["id"], task["id"])["status"]   # Status.QUEUED ... Status.COMPLETED
    client.download_asset(project["id"], task["id"], "orthophoto.tif", "ortho.tif")

Errors are vendors.errors types: 400 InputError (with `field`), 401/403 AuthError, 404 NotFound,
429/5xx/transport TransientError. A 403 "Signature has expired." logs in again once and retries.
What it relies on is in docs/vendors/dronemapper.md.

Modules: states (task statuses and pending actions), errors (error answers as typed errors),
tokens (JWT expiry and rejection), connection (login, token and one retried call), projects,
task_fields (task options and form values), upload_sources (images as the multipart upload reads
them), uploads (task creation and partial upload), tasks (task reads and actions), downloads
(assets), tiles (tile layers), nodes (processing nodes), and client (DroneMapperClient, all of them).
"""
