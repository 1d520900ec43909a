"""Bounded, seeded fuzzing of a gateway through real sockets.

    python -m bench.fuzz --cases 2000 --seed 1                       # in-process gateway
    python -m bench.fuzz --cases 100000 --seed 7 --json out.json     # the long mode
    python -m bench.fuzz --target frames --seed 1 --replay 1234      # one case, verbose
    python -m bench.fuzz --write-app /tmp/fz && hubbub serve --config /tmp/fz/hubbub.toml &
    python -m bench.fuzz --url ws://127.0.0.1:8080/dev --management-url http://127.0.0.1:8081/dev

Targets (``--target``, comma separated; ``--cases`` is the total, dealt round-robin):

- ``handshake``: malformed upgrade requests on the public listener: mutated methods, targets,
  versions, ``Sec-WebSocket-Key``/``Version``/``Extensions``, huge and numerous headers, bare LF,
  obs-fold, bodies, non-HTTP garbage (TLS, HTTP/2 preface, random bytes), pipelining and bounded
  slowloris (chunks with small delays, or a prefix and then silence until the server gives up).
- ``frames``: a good handshake, then frame sequences: bad opcodes, reserved bits, unmasked frames,
  invalid UTF-8, truncated frames, lying 64-bit lengths, fragmented and oversized control frames,
  continuation without start, limits ±1 byte, close frames with bad codes, random bytes; the byte
  stream is cut at random points so frame headers straddle TCP reads.
- ``management``: random methods, paths (``%00``, ``%2F``, overlong and invalid UTF-8, dot
  segments), query strings, headers (duplicate ``Content-Length``, chunked, ``Expect``) and bodies
  on the management listener, some aimed at live "victim" connections (post, delete, join, bind).
- ``bodies``: random text messages through a real socket; the reply must be the one the pure
  route selector predicts (echo route, or ``$default``).
- ``config``: structured mutations of a valid config rendered to TOML and loaded with
  ``load_config``: it must return a Config or raise ConfigError, and a Config must hold no NaN.

Every case is generated from ``random.Random(f"{seed}:{target}:{index}")`` alone, so a failing case
replays with ``--replay INDEX``. Oracles that flag a *finding*: an HTTP 5xx, a timeout where the
server had everything it needed to answer, a close code outside the set RFC 6455 / the AWS limits
prescribe, a wrong or missing reply, an exception from ``load_config`` other than ConfigError.

Invariants (checked every ``--check-every`` cases and at the end, in-process mode): the gateway
still serves a normal client (connect, echo round trip); once all fuzz sockets are closed, the hub,
the registry (and the memory store's room and user indexes), the lifecycle's ``background`` tasks,
the invoker's ``in_flight`` and ``asyncio.all_tasks()`` come back to their baseline within a settle
deadline; and no ERROR record was logged by ``hubbub.*``, ``aiohttp.*`` or ``asyncio``, nor any
traceback on ``hubbub.transport.peer`` other than an HTTP parse error or a vanished peer (every
input here is a client fault, so none may produce a crash; see
:class:`~bench.fuzz.invariants.ErrorRecorder`).
With ``--url`` only the serve check (and ``/health`` returning to its starting connection count,
with ``--management-url``) can be verified.

Modules, one role each:

- ``handshake``, ``frames``, ``management``, ``bodies``, ``config``: one target each, its case
  generator (``gen_*``, a pure function of the case's ``random.Random``) and its runner
  (``run_*``, which sends the case and applies the target's oracle);
- ``values``: random text, bytes, JSON and percent-encoding shared by the generators;
- ``wire``: the raw-socket ``Peer``, client frames and upgrade requests built byte by byte;
- ``env``: the options, the fuzz app and its config, the ``Env`` a case runs against (an
  in-process gateway or ``--url``) and the "victim" connections management cases aim at;
- ``invariants``: the error recorder, the serve check, the back-to-baseline check, ``Checker``;
- ``report``: case results and the summary; ``known``: the known bugs the CI sample tolerates;
- ``run``: one case, a whole run, a replay; ``__main__``: the command line.
"""
