"""A tiny web app that answers every request with the pid of the process
that served it, in both flavours Python servers speak:

- `app`: ASGI, for uvicorn (`uvicorn pid_app:app`);
- `application`: WSGI, for gunicorn (`gunicorn pid_app:application`).

Used by the worker recipes in docs/workers.md (config/uvicorn.toml,
config/gunicorn.toml) and by their tests and benchmarks: several pids in the
answers show several workers sharing the one socket Ringmaster holds.
"""
import os


def _body():
    return b"hello from pid %d\n" % os.getpid()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = _body()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def application(environ, start_response):
    body = _body()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
