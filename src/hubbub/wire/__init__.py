"""hubbub's own vocabulary on the wire, as plain values and pure functions.

Nothing here does I/O or imports asyncio, aiohttp or another hubbub layer (a test checks it), so
every layer may use it: the gateway, the store, the transport adapter.

- :mod:`hubbub.wire.close`: close codes (:class:`~hubbub.wire.close.CloseCode`) and the closes
  hubbub sends, each a code with its reason;
- :mod:`hubbub.wire.kinds`: what a socket read returns (:class:`~hubbub.wire.kinds.MessageKind`)
  and how a cross-node delivery fans out (:data:`~hubbub.wire.kinds.DeliveryKind`);
- :mod:`hubbub.wire.http`: plain HTTP requests, responses and WebSocket handshakes;
- :mod:`hubbub.wire.frames`: building server-to-client WebSocket frames;
- :mod:`hubbub.wire.session`: the opt-in ``hubbub.v1`` protocol's frames (session, room
  envelopes, resume answers).
"""
