// PostToConnection of the AWS SDK for JavaScript v3 to this gateway, without the SDK's per-call
// work, for the functions hubbub runs (the Node.js counterpart of
// src/hubbub/gateway/management/botocore_hooks.py).
//
// One `client.send(new PostToConnectionCommand(...))` costs about a millisecond of CPU in the SDK
// (the middleware stack, endpoint rules, credentials, SigV4 signing, node:http). When the
// management listener takes unsigned requests (hubbub sets _HUBBUB_MANAGEMENT_UNSIGNED=1 only
// under `[management] auth = "none"`, where it ignores signatures), a post to that listener is
// sent here instead: an unsigned HTTP/1.1 POST on a keep-alive node:net connection
// (runtime_api.js's Connection). Its answer, when it is the 200 of an accepted post, becomes the
// output the SDK builds from that answer ({$metadata: {httpStatusCode, requestId,
// extendedRequestId, cfId, attempts: 1, totalRetryDelay: 0}}). Any other answer, or no answer,
// sends the same command the SDK's own way, which then gives the SDK's own result or error
// (GoneException and friends, with their $metadata): a post the gateway did not accept has had no
// effect, so running it again is safe.
//
// The SDK's own way is taken, untouched, unless every one of these holds (checked per call):
// - HUBBUB_NODE_SDK_FAST_PATH is not "0" (the switch to turn this off) and the listener is
//   unsigned (above);
// - the command is a PostToConnectionCommand of the client's own package, with nothing on its
//   own middlewareStack, a non-empty string ConnectionId and a string or Uint8Array Data; no
//   options argument (abortSignal, requestTimeout...), a callback is fine;
// - the client's middlewareStack holds exactly the middleware a new client of the package has
//   (same names, steps, relations and functions' source), nothing has been added to or removed
//   from it since that was checked, and identifyOnResolve is off;
// - the client's endpoint is an explicit one (the `endpoint` option) on the management listener
//   itself: http:, the host and port of _HUBBUB_MANAGEMENT_URL, a path without a trailing "/"
//   (the stage) and no query;
// - requestHandler is the one the SDK made itself (no requestHandler option, no extension
//   replacing it), and endpointProvider, protocol, logger (the SDK's no-op one), utf8Decoder and
//   urlParser are the package's defaults; useFipsEndpoint and useDualstackEndpoint are off; the
//   retry strategy is the SDK's "standard" one; region and credentials resolve (else the SDK's
//   way reports why not).
//
// How: require() of the package (an ES module's `import` of it loads the same CommonJS build,
// dist-cjs, through Module._load, since the package has no "exports" map) hands its exports to
// install()'s hook, which gives ApiGatewayManagementApiClient.prototype its own `send` (the
// aggregated ApiGatewayManagementApi's postToConnection calls this.send too). @smithy/
// node-http-handler, required by the package before that, has NodeHttpHandler.create wrapped to
// remember the handlers the SDK makes from its own defaults.
"use strict";

const Module = require("node:module");
const { Connection } = require("./runtime_api.js");

// Handlers NodeHttpHandler.create made from the SDK's default-config provider (a function; what
// a user passes is a handler or an options object, never a function).
const defaultHandlers = new WeakSet();
// client -> the middlewareStack found identical to a new client's and watched since.
const pristineStacks = new WeakMap();
// Idle keep-alive connections kept to the listener: posts in flight at once (a handler's
// Promise.all over many connections) each take one; beyond this many, they close once answered.
const MAX_IDLE = 8;

function managementListener(env = process.env) {
  if (env._HUBBUB_MANAGEMENT_UNSIGNED !== "1" || env.HUBBUB_NODE_SDK_FAST_PATH === "0") {
    return null;
  }
  let url;
  try {
    url = new URL(env._HUBBUB_MANAGEMENT_URL || "");
  } catch {
    return null;
  }
  if (url.protocol !== "http:" || !url.port) {
    return null;
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  return { hostname: url.hostname, host: hostname, port: Number(url.port), connections: [] };
}

// The SDK's extendedEncodeURIComponent (what it writes for the {ConnectionId} path label).
function encodeLabel(value) {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

// One request to the listener on an idle keep-alive connection (or a new one): resolves with
// the answer ({status, headers, body}), rejects when there is none.
function post(target, path, data) {
  let connection;
  while (target.connections.length > 0 && connection === undefined) {
    const candidate = target.connections.pop();
    if (!candidate.closed && !candidate.busy) {
      connection = candidate;
    }
  }
  if (connection === undefined) {
    connection = new Connection(target.host, target.port);
  }
  const head =
    `POST ${path} HTTP/1.1\r\nHost: ${target.hostname}:${target.port}\r\n` +
    "Content-Type: application/octet-stream\r\n";
  let request;
  if (typeof data === "string") {
    request = `${head}Content-Length: ${Buffer.byteLength(data, "utf8")}\r\n\r\n${data}`;
  } else {
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    request = Buffer.concat([Buffer.from(`${head}Content-Length: ${bytes.length}\r\n\r\n`), bytes]);
  }
  return connection.send(request, `POST ${path}`).then((answer) => {
    if (!connection.closed && !connection.busy) {
      if (target.connections.length < MAX_IDLE) {
        target.connections.push(connection);
      } else {
        connection.close();
      }
    }
    return answer;
  });
}

// What a client of one package must look like for the fast path, from a new client of it.
class Reference {
  constructor(exported) {
    this.Post = exported.PostToConnectionCommand;
    const client = new exported.ApiGatewayManagementApiClient({
      region: "us-east-1",
      endpoint: "http://127.0.0.1/",
      credentials: { accessKeyId: "reference", secretAccessKey: "reference" },
    });
    this.stack = describeStack(client.middlewareStack);
    const config = client.config;
    this.endpointProvider = config.endpointProvider;
    this.protocol = config.protocol && config.protocol.constructor;
    this.logger = config.logger && config.logger.constructor;
    this.utf8Decoder = config.utf8Decoder;
    this.urlParser = config.urlParser;
    client.destroy();
  }

  // The config checks that need no promise.
  sameConfig(config) {
    return (
      defaultHandlers.has(config.requestHandler) &&
      config.endpointProvider === this.endpointProvider &&
      typeof config.endpoint === "function" &&
      config.protocol?.constructor === this.protocol &&
      config.logger?.constructor === this.logger &&
      config.utf8Decoder === this.utf8Decoder &&
      config.urlParser === this.urlParser
    );
  }
}

// The entries of a middleware stack, as one string: what applyToStack copies of each (name,
// aliases, step, priority, relation, tags, the function's source).
function describeStack(stack) {
  const entries = [];
  const collect = (middleware, options) => {
    entries.push(JSON.stringify({ ...options, middleware: String(middleware) }));
  };
  stack.applyToStack({ add: collect, addRelativeTo: collect });
  return entries.join("\n");
}

function isEmptyStack(stack) {
  let empty = true;
  const seen = () => {
    empty = false;
  };
  stack.applyToStack({ add: seen, addRelativeTo: seen });
  return empty;
}

const MUTATORS = ["add", "addRelativeTo", "use", "remove", "removeByTag"];

// Whether the client's stack is a new client's; the first time it is, its mutators are wrapped
// so that any later change takes it off the fast path for good.
function pristine(client, reference) {
  const stack = client.middlewareStack;
  const known = pristineStacks.get(client);
  if (known !== undefined) {
    return known === stack && !stack.identifyOnResolve();
  }
  if (stack === null || typeof stack !== "object" || typeof stack.applyToStack !== "function") {
    pristineStacks.set(client, null);
    return false;
  }
  if (describeStack(stack) !== reference.stack) {
    pristineStacks.set(client, null);
    return false;
  }
  for (const name of MUTATORS) {
    const original = stack[name];
    stack[name] = function changed(...args) {
      pristineStacks.set(client, null);
      return original.apply(this, args);
    };
  }
  pristineStacks.set(client, stack);
  return !stack.identifyOnResolve();
}

// The checks that need no promise; true when the command may take the fast path.
function eligible(client, command, reference) {
  const input = command.input;
  return (
    command.constructor === reference.Post &&
    input !== null &&
    typeof input === "object" &&
    typeof input.ConnectionId === "string" &&
    input.ConnectionId !== "" &&
    (typeof input.Data === "string" || input.Data instanceof Uint8Array) &&
    client.config !== null &&
    typeof client.config === "object" &&
    reference.sameConfig(client.config) &&
    isEmptyStack(command.middlewareStack) &&
    pristine(client, reference)
  );
}

// The request path on the listener, or undefined when the endpoint is not the listener's.
function listenerPath(endpoint, target) {
  if (
    endpoint === null ||
    typeof endpoint !== "object" ||
    endpoint.protocol !== "http:" ||
    String(endpoint.hostname).toLowerCase() !== target.hostname.toLowerCase() ||
    Number(endpoint.port) !== target.port ||
    (endpoint.query && Object.keys(endpoint.query).length > 0)
  ) {
    return undefined;
  }
  const path = endpoint.path || "/";
  if (path === "/") {
    return "";
  }
  return path.endsWith("/") ? undefined : path;
}

// The output of an accepted post, or undefined: then the SDK's own way answers.
async function fastPost(client, command, target) {
  const config = client.config;
  let endpoint;
  try {
    if ((await config.useFipsEndpoint()) || (await config.useDualstackEndpoint())) {
      return undefined;
    }
    endpoint = await config.endpoint();
    const strategy = await config.retryStrategy();
    if (strategy?.mode !== "standard") {
      return undefined;
    }
    await config.region();
    await config.credentials();
  } catch {
    return undefined;
  }
  const base = listenerPath(endpoint, target);
  if (base === undefined) {
    return undefined;
  }
  const { ConnectionId, Data } = command.input;
  let answer;
  try {
    answer = await post(target, `${base}/@connections/${encodeLabel(ConnectionId)}`, Data);
  } catch {
    return undefined;
  }
  if (answer.status !== 200) {
    return undefined;
  }
  const headers = answer.headers;
  // The SDK's deserializeMetadata, then its retry middleware's attempts and totalRetryDelay.
  return {
    $metadata: {
      httpStatusCode: 200,
      requestId:
        headers["x-amzn-requestid"] ?? headers["x-amzn-request-id"] ?? headers["x-amz-request-id"],
      extendedRequestId: headers["x-amz-id-2"],
      cfId: headers["x-amz-cf-id"],
      attempts: 1,
      totalRetryDelay: 0,
    },
  };
}

function patchClient(exported, target) {
  const proto = exported.ApiGatewayManagementApiClient.prototype;
  const parent = Object.getPrototypeOf(proto);
  const original = parent.send;
  let reference;
  Object.defineProperty(proto, "send", {
    configurable: true,
    enumerable: false,
    writable: true,
    value: function send(command, optionsOrCb, cb) {
      // The SDK's send, as looked up now (a test double put on the base class still answers).
      const sdkSend = parent.send;
      if (
        sdkSend !== original ||
        command === null ||
        typeof command !== "object" ||
        (optionsOrCb !== undefined && typeof optionsOrCb !== "function")
      ) {
        return sdkSend.apply(this, arguments);
      }
      if (reference === undefined) {
        try {
          reference = new Reference(exported);
        } catch {
          reference = null; // a package this code does not know: always the SDK's way
        }
      }
      let fast = false;
      try {
        fast = reference !== null && eligible(this, command, reference);
      } catch {
        // Something these checks do not expect (a getter that throws, middleware options JSON
        // cannot write): whatever it is, the SDK's way deals with it as it would anyway.
      }
      if (!fast) {
        return sdkSend.apply(this, arguments);
      }
      const callback = typeof optionsOrCb === "function" ? optionsOrCb : cb;
      const output = fastPost(this, command, target).then(
        (result) => result ?? sdkSend.call(this, command),
      );
      if (typeof callback !== "function") {
        return output;
      }
      // As the SDK's send with a callback: the callback gets (error) or (null, output).
      output.then((result) => callback(null, result), (error) => callback(error)).catch(() => {});
      return undefined;
    },
  });
}

function looksLikeClientPackage(exported) {
  try {
    return (
      exported !== null &&
      typeof exported === "object" &&
      Object.hasOwn(exported, "ApiGatewayManagementApiClient") &&
      Object.hasOwn(exported, "PostToConnectionCommand") &&
      typeof exported.ApiGatewayManagementApiClient === "function" &&
      typeof exported.PostToConnectionCommand === "function" &&
      typeof Object.getPrototypeOf(exported.ApiGatewayManagementApiClient.prototype)?.send ===
        "function" &&
      !Object.hasOwn(exported.ApiGatewayManagementApiClient.prototype, "send")
    );
  } catch {
    return false;
  }
}

function looksLikeHandlerPackage(exported) {
  try {
    return (
      exported !== null &&
      typeof exported === "object" &&
      Object.hasOwn(exported, "NodeHttpHandler") &&
      typeof exported.NodeHttpHandler === "function" &&
      typeof exported.NodeHttpHandler.create === "function"
    );
  } catch {
    return false;
  }
}

// Each NodeHttpHandler class once (a package that re-exports it hands over the same class).
const patchedHandlers = new WeakSet();

function patchHandler(NodeHttpHandler) {
  if (patchedHandlers.has(NodeHttpHandler)) {
    return;
  }
  patchedHandlers.add(NodeHttpHandler);
  const create = NodeHttpHandler.create;
  NodeHttpHandler.create = function createHandler(instanceOrOptions) {
    const handler = create.call(this, instanceOrOptions);
    if (typeof instanceOrOptions === "function" && handler !== instanceOrOptions) {
      defaultHandlers.add(handler);
    }
    return handler;
  };
}

// Watch require() for the two packages (every copy, once each); nothing when the listener is
// not ours to post to unsigned.
function install(env = process.env) {
  const target = managementListener(env);
  if (target === null) {
    return;
  }
  const patched = new WeakSet();
  const load = Module._load;
  Module._load = function hubbubLoadV3(request, parent, isMain) {
    const exported = load.call(this, request, parent, isMain);
    if (exported !== null && typeof exported === "object" && !patched.has(exported)) {
      if (looksLikeHandlerPackage(exported)) {
        patched.add(exported);
        patchHandler(exported.NodeHttpHandler);
      } else if (looksLikeClientPackage(exported)) {
        patched.add(exported);
        patchClient(exported, target);
      }
    }
    return exported;
  };
}

module.exports = { install, managementListener, encodeLabel, listenerPath };
