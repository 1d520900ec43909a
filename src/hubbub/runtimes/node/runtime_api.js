// A client of the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API = "host:port"): HTTP/1.1 on
// node:net, keep-alive, one request at a time per connection. aws_sdk_v3.js posts to the
// management listener with the same Connection.
//
// Why not node:http: its client costs ~190 µs of CPU per invocation (GET next + POST response)
// against ~50 µs for this one, and the Runtime API needs little of it: the requests are ours,
// and the answers are small, framed by Content-Length (hubbub's endpoint never sends anything
// else; chunked answers and answers ended by closing the connection are read too, for another
// endpoint). Anything else (a malformed status line or header, a connection closed mid-answer)
// rejects the request with an error naming it.
"use strict";

const net = require("node:net");
const { toRapidResponse } = require("./errors.js");

const PREFIX = "/2018-06-01/runtime";
const MAX_HEAD = 64 * 1024; // an answer's status line and headers
// Where every connection reads (one read at a time, consumed before the next: onData).
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function toBuffer(data) {
  return typeof data === "string" ? Buffer.from(data, "utf8") : data;
}

class ProtocolError extends Error {
  constructor(message) {
    super(`Runtime API: ${message}`);
    this.name = "RuntimeApiProtocolError";
  }
}

// Header names as sent -> their keys in an answer's headers (trimmed, lower case): the Runtime
// API sends the same few names in every answer, which then cost one lookup. Bounded: names
// past the first 64 are worked out each time.
const HEADER_KEYS = new Map();

function headerKey(name) {
  let key = HEADER_KEYS.get(name);
  if (key === undefined) {
    key = name.trim().toLowerCase();
    if (HEADER_KEYS.size < 64) {
      HEADER_KEYS.set(name, key);
    }
  }
  return key;
}

// ``value.trim()``, without a new string when neither end can be whitespace (every character
// String.prototype.trim strips is a control character, a space, or beyond ASCII).
function trim(value) {
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  return first <= 32 || first >= 127 || last <= 32 || last >= 127 ? value.trim() : value;
}

// Parses one answer from the bytes fed to it; returns the answer once complete, else null.
class AnswerParser {
  constructor(what) {
    this.what = what;
    this.buffer = null; // bytes not yet consumed
    this.head = null; // {status, headers} once the head is in
    this.length = -1; // Content-Length, -1 for chunked or until close
    this.chunked = false;
    this.chunks = [];
    this.kept = 0; // chunks copied already (keep)
    this.rest = null; // bytes after the answer: the start of the next one (pipelining)
  }

  feed(data) {
    this.buffer = this.buffer === null ? data : Buffer.concat([this.buffer, data]);
    if (this.head === null && !this.parseHead()) {
      return null;
    }
    if (this.chunked) {
      return this.parseChunks();
    }
    if (this.length >= 0 && this.buffer.length >= this.length) {
      this.rest = this.buffer.subarray(this.length);
      return this.answer(this.buffer.subarray(0, this.length));
    }
    return null;
  }

  // The answer is not complete: what it holds of the bytes read is copied, for the connection
  // reads into one buffer, which the next read overwrites.
  keep() {
    if (this.buffer !== null) {
      this.buffer = Buffer.from(this.buffer);
    }
    for (; this.kept < this.chunks.length; this.kept++) {
      this.chunks[this.kept] = Buffer.from(this.chunks[this.kept]);
    }
  }

  // The connection closed: an answer without framing ends here; any other is cut short.
  end() {
    if (this.head !== null && this.length < 0 && !this.chunked) {
      return this.answer(this.buffer || Buffer.alloc(0));
    }
    throw new ProtocolError(`the connection closed before the whole answer to ${this.what}`);
  }

  parseHead() {
    const end = this.buffer.indexOf("\r\n\r\n");
    if (end < 0) {
      if (this.buffer.length > MAX_HEAD) {
        throw new ProtocolError(`the answer to ${this.what} has a head over ${MAX_HEAD} bytes`);
      }
      return false;
    }
    // One string for the head, read line by line where it is (no array of lines).
    const text = this.buffer.toString("latin1", 0, end);
    let eol = text.indexOf("\r\n");
    if (eol < 0) {
      eol = text.length;
    }
    const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(text.slice(0, eol));
    if (status === null) {
      throw new ProtocolError(`not an HTTP/1.x status line in the answer to ${this.what}: ${JSON.stringify(text.slice(0, Math.min(eol, 100)))}`);
    }
    const headers = {};
    for (let at = eol + 2; at < text.length; at = eol + 2) {
      eol = text.indexOf("\r\n", at);
      if (eol < 0) {
        eol = text.length;
      }
      const colon = text.indexOf(":", at);
      if (colon <= at || colon > eol) {
        throw new ProtocolError(`malformed header in the answer to ${this.what}: ${JSON.stringify(text.slice(at, Math.min(eol, at + 100)))}`);
      }
      headers[headerKey(text.slice(at, colon))] = trim(text.slice(colon + 1, eol));
    }
    this.head = { status: Number(status[1]), headers };
    this.buffer = this.buffer.subarray(end + 4);
    const encoding = headers["transfer-encoding"];
    if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
      if (encoding.toLowerCase() !== "chunked") {
        throw new ProtocolError(`unsupported Transfer-Encoding ${JSON.stringify(encoding)} in the answer to ${this.what}`);
      }
      this.chunked = true;
    } else if (headers["content-length"] !== undefined) {
      if (!/^\d+$/.test(headers["content-length"])) {
        throw new ProtocolError(`invalid Content-Length ${JSON.stringify(headers["content-length"])} in the answer to ${this.what}`);
      }
      this.length = Number(headers["content-length"]);
    } else if (this.head.status === 204 || this.head.status === 304) {
      this.length = 0;
    }
    return true;
  }

  parseChunks() {
    for (;;) {
      const eol = this.buffer.indexOf("\r\n");
      if (eol < 0) {
        return null;
      }
      const size = parseInt(this.buffer.toString("latin1", 0, eol).split(";")[0], 16);
      if (Number.isNaN(size)) {
        throw new ProtocolError(`malformed chunk size in the answer to ${this.what}`);
      }
      if (size === 0) {
        // The last chunk; trailers (ignored) end with an empty line.
        const end = this.buffer.indexOf("\r\n\r\n", eol);
        if (end < 0) {
          return null;
        }
        this.rest = this.buffer.subarray(end + 4);
        return this.answer(Buffer.concat(this.chunks));
      }
      if (this.buffer.length < eol + 2 + size + 2) {
        return null;
      }
      this.chunks.push(this.buffer.subarray(eol + 2, eol + 2 + size));
      this.buffer = this.buffer.subarray(eol + 2 + size + 2);
    }
  }

  answer(body) {
    return { status: this.head.status, headers: this.head.headers, body: body.toString("utf8") };
  }
}

// One keep-alive connection; unref'd while idle, so that it never keeps the event loop busy
// (waiting for an empty event loop, callbackWaitsForEmptyEventLoop, still works). Requests may
// be pipelined: their answers come back in order.
class Connection {
  constructor(host, port) {
    this.pending = []; // {parser, resolve, reject} of the requests in flight, in order
    this.closed = false;
    this.outgoing = null; // the requests made in this tick, to write at its end, or null
    this.flush = () => this.write();
    // Reads go straight to onData, in one buffer (net's onread): no stream machinery per read
    // (Readable.push, a 'data' event, maybeReadMore's extra tick).
    this.socket = net.connect({
      host,
      port,
      onread: {
        buffer: READ_BUFFER,
        callback: (size, buffer) => {
          this.onData(buffer.subarray(0, size));
        },
      },
    });
    this.socket.setNoDelay(true);
    this.socket.on("end", () => this.onEnd());
    this.socket.on("error", (error) => this.fail(error));
    this.socket.on("close", () => this.onEnd());
  }

  get busy() {
    return this.pending.length > 0;
  }

  // ``data``: the whole request, a string (its head is ASCII, its body UTF-8) or a Buffer.
  send(data, what) {
    return new Promise((resolve, reject) => {
      if (this.pending.push({ parser: new AnswerParser(what), resolve, reject }) === 1) {
        this.socket.ref(); // unref'd again once nothing is in flight (finish)
      }
      if (this.outgoing === null) {
        // Requests made in the same tick (a response, then the next GET the bootstrap sends
        // as soon as it is written) leave in one write of one string: cheaper than corking
        // the socket, whose uncork hands writev an array of chunks.
        this.outgoing = data;
        process.nextTick(this.flush);
      } else if (typeof data === "string" && typeof this.outgoing === "string") {
        this.outgoing += data;
      } else {
        // A Buffer (a binary post from aws_sdk_v3.js) is never joined as a string.
        this.outgoing = Buffer.concat([toBuffer(this.outgoing), toBuffer(data)]);
      }
    });
  }

  write() {
    const data = this.outgoing;
    this.outgoing = null;
    if (!this.socket.destroyed) {
      this.socket.write(data, "utf8");
    }
  }

  onData(data) {
    let bytes = data;
    while (bytes !== null && bytes.length > 0) {
      const pending = this.pending[0];
      if (pending === undefined) {
        this.fail(new ProtocolError(`${bytes.length} bytes from the Runtime API without a request`));
        return;
      }
      let answer;
      try {
        answer = pending.parser.feed(bytes);
      } catch (error) {
        this.fail(error);
        return;
      }
      if (answer === null) {
        pending.parser.keep();
        return;
      }
      bytes = pending.parser.rest;
      this.finish(answer);
      if (this.closed) {
        return;
      }
    }
  }

  onEnd() {
    this.closed = true;
    const pending = this.pending[0];
    if (pending === undefined) {
      return;
    }
    let answer;
    try {
      answer = pending.parser.end();
    } catch (error) {
      this.fail(error);
      return;
    }
    this.finish(answer);
  }

  finish(answer) {
    const pending = this.pending.shift();
    const connection = (answer.headers.connection || "").toLowerCase();
    if (connection === "close" || this.closed) {
      this.closed = true;
      this.socket.destroy();
    } else if (this.pending.length === 0) {
      this.socket.unref();
    }
    pending.resolve(answer);
    if (this.closed) {
      this.fail(new ProtocolError("the connection closed before the answer"));
    }
  }

  // Closes an idle connection (one kept for later requests that is no longer wanted).
  close() {
    this.closed = true;
    this.socket.destroy();
  }

  // Every request still in flight fails with ``error``.
  fail(error) {
    const pending = this.pending;
    this.pending = [];
    this.closed = true;
    this.socket.destroy();
    for (const request of pending) {
      request.reject(error);
    }
  }
}

class RuntimeApi {
  constructor(address) {
    const at = address.lastIndexOf(":");
    this.host = at > 0 ? address.slice(0, at).replace(/^\[|\]$/g, "") : address;
    this.port = at > 0 ? Number(address.slice(at + 1)) : 80;
    this.hostHeader = address;
    // The connection of the invocation cycle: POST .../response, then GET .../next pipelined
    // behind it (one write and one wake-up less per invocation than waiting for the 202).
    // Any other request while it is busy (an error report during the long poll of
    // invocation/next) takes a connection of its own.
    this.main = null;
    this.idle = [];
  }

  connection(pipeline) {
    if (pipeline) {
      if (this.main === null || this.main.closed) {
        this.main = new Connection(this.host, this.port);
      }
      return this.main;
    }
    if (this.main !== null && !this.main.closed && !this.main.busy) {
      return this.main;
    }
    while (this.idle.length > 0) {
      const candidate = this.idle.pop();
      if (!candidate.closed && !candidate.busy) {
        return candidate;
      }
    }
    return new Connection(this.host, this.port);
  }

  request(method, path, body, headers = null, pipeline = false) {
    let data = `${method} ${PREFIX}${path} HTTP/1.1\r\nHost: ${this.hostHeader}\r\n`;
    if (headers !== null) {
      for (const [name, value] of Object.entries(headers)) {
        data += `${name}: ${value}\r\n`;
      }
    }
    if (body !== undefined) {
      // One string written once: no Buffer for the body, the head, and their concatenation.
      const length = Buffer.byteLength(body, "utf8");
      data += `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n${body}`;
    } else {
      data += "\r\n";
    }
    const connection = this.connection(pipeline);
    const answered = connection.send(data, `${method} ${path}`);
    if (connection !== this.main) {
      answered.then(
        () => {
          if (!connection.closed && !connection.busy) {
            this.idle.push(connection);
          }
        },
        () => {},
      );
    }
    return answered;
  }

  async next() {
    const res = await this.request("GET", "/invocation/next", undefined, null, true);
    if (res.status !== 200) {
      throw new Error(`the Runtime API answered ${res.status} to invocation/next: ${res.body}`);
    }
    return res;
  }

  // Not async: a result JSON cannot represent (a cycle, a BigInt) throws here, synchronously,
  // so that the caller reports it as the invocation's error.
  postResponse(requestId, result) {
    const body = JSON.stringify(result === undefined ? null : result);
    const path = `/invocation/${encodeURIComponent(requestId)}/response`;
    return this.request("POST", path, body, null, true);
  }

  async postError(requestId, error) {
    return this.postErrorTo(`/invocation/${encodeURIComponent(requestId)}/error`, error);
  }

  async postInitError(error) {
    return this.postErrorTo("/init/error", error);
  }

  async postErrorTo(path, error) {
    const response = toRapidResponse(error);
    return this.request("POST", path, JSON.stringify(response), {
      "Lambda-Runtime-Function-Error-Type": String(response.errorType).replace(/[^\x20-\x7e]/g, ""),
    });
  }
}

module.exports = { RuntimeApi, AnswerParser, Connection };
