"""A uvicorn HTTP protocol that does not drop requests when the worker stops.

uvicorn's H11Protocol.shutdown() (uvicorn/protocols/http/h11_impl.py) closes
at once every connection that has no request in progress: one that asyncio
has accepted but whose request bytes it has not read yet, and an idle
keep-alive connection whose client may have sent its next request already.
Closing a socket with unread data makes Linux answer with a RST, so the
client loses a request it had already sent.

This subclass, selected with `uvicorn --http uvicorn_graceful:GracefulH11Protocol`
(the module must be importable: `--app-dir config` puts this directory on
sys.path, as config/uvicorn.toml does), instead serves one more
request on such a connection, answered with `Connection: close` (so the client
reconnects, to another worker), and closes it only if nothing arrives within
UVICORN_GRACEFUL_IDLE seconds (default 1.0). A request in progress is also
answered with `Connection: close` when its headers are not sent yet (uvicorn
closes after it but does not say so, and a keep-alive client's next request
then meets a closed socket). Everything else is uvicorn's own behaviour.

Measured (docs/benchmarks.md): under wrk load, every SIGTERM of a plain
uvicorn 0.54 worker lost 0-40 requests this way, with or without a supervisor
(also in uvicorn's own SIGHUP restart); with this protocol, none. Written for
uvicorn's h11 implementation (the one used when httptools is not installed);
the httptools one has the same `shutdown` and would need the same change.
Upstream: https://github.com/Kludex/uvicorn/issues/2757
"""
import os

from uvicorn.protocols.http.h11_impl import H11Protocol

GRACE = float(os.environ.get("UVICORN_GRACEFUL_IDLE", "1.0"))
CLOSE = (b"connection", b"close")


class GracefulH11Protocol(H11Protocol):
    _drain_timer = None

    def _idle(self) -> bool:
        # No request read yet, or an idle keep-alive connection: the client's
        # next request may already be sitting unread in the socket buffer.
        return (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing()

    def _close_after(self, cycle) -> None:
        """This response says `Connection: close`, and the connection closes after it."""
        if not cycle.response_started:
            if CLOSE not in cycle.scope["headers"]:
                cycle.scope["headers"].append(CLOSE)  # uvicorn then adds the header to the response
            cycle.keep_alive = False
        # Headers already sent as keep-alive: the connection stays open for
        # one more request, which handle_events answers with close.

    def shutdown(self) -> None:
        if self.transport.is_closing():
            return
        if self._drain_timer is None:
            self._drain_timer = self.loop.call_later(GRACE, self._drain_expired)
        if not self._idle() and self.cycle is not None:
            self._close_after(self.cycle)

    def _drain_expired(self) -> None:
        if self._idle():
            super().shutdown()

    def handle_events(self) -> None:
        super().handle_events()
        if self._drain_timer is not None and self.cycle is not None and not self.cycle.response_complete:
            self._close_after(self.cycle)

    def connection_lost(self, exc) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        super().connection_lost(exc)
