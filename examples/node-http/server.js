// The hubbub chat example, in Node.js, as an HTTP integration.
//
// `handler(event)` is written as for AWS Lambda (Node.js runtime, API Gateway WebSocket API):
// it takes the same event and returns the same result. The few lines at the bottom put it behind
// a plain node:http server, which is all hubbub's HTTP integration needs: hubbub POSTs each event
// as JSON and reads the JSON reply as the Lambda result (docs/integrations.md).
//
// Routes:
//   $connect      remember the connection id
//   $disconnect   forget it
//   sendMessage   {"action": "sendMessage", "message": "hi"} -> broadcast to everyone
//   $default      anything else -> a short help message back to the caller
//
// Environment:
//   PORT                 where to listen (default 9000; 0 = any free port)
//   HOST                 interface to listen on (default 127.0.0.1)
//   WEBSOCKET_ENDPOINT   hubbub's management API, e.g. http://127.0.0.1:8081/dev; when unset the
//                        handler builds https://{domainName}/{stage} from the event, as on AWS
//                        (then start node with NODE_EXTRA_CA_CERTS set to hubbub's CA, see
//                        docs/https-endpoint.md)
//   AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   anything, for the SDK's signer

import http from "node:http";
import {
  ApiGatewayManagementApiClient,
  GoneException,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

// The connection table: the DynamoDB stand-in. In memory, so it lives as long as this process
// (on Lambda it would be a DynamoDB table, because containers come and go).
const connections = new Set();

// One management client per endpoint, created once and reused, as in a warm Lambda container.
const clients = new Map();

function managementClient(event) {
  const rc = event.requestContext;
  const endpoint = process.env.WEBSOCKET_ENDPOINT || `https://${rc.domainName}/${rc.stage}`;
  let client = clients.get(endpoint);
  if (client === undefined) {
    client = new ApiGatewayManagementApiClient({ endpoint });
    clients.set(endpoint, client);
  }
  return client;
}

// Post one frame; false (and the id forgotten) if that connection is gone (410).
async function send(event, connectionId, payload) {
  const command = new PostToConnectionCommand({
    ConnectionId: connectionId,
    Data: Buffer.from(JSON.stringify(payload)),
  });
  try {
    await managementClient(event).send(command);
    return true;
  } catch (err) {
    if (err instanceof GoneException || err?.name === "GoneException") {
      console.log(`connection ${connectionId} is gone, removing it`);
      connections.delete(connectionId);
      return false;
    }
    throw err;
  }
}

const HELP = 'Send {"action": "sendMessage", "message": "your text"} to talk to everyone here.';

async function onDefault(event) {
  const caller = event.requestContext.connectionId;
  await send(event, caller, { action: "help", message: HELP, connectionId: caller });
}

async function onSendMessage(event) {
  const rc = event.requestContext;
  let text = "";
  try {
    text = String(JSON.parse(event.body || "{}").message ?? "").trim();
  } catch {
    text = "";
  }
  if (!text) {
    await onDefault(event);
    return;
  }
  const payload = {
    action: "message",
    from: rc.connectionId,
    message: text.slice(0, 2000),
    sentAt: rc.requestTimeEpoch ?? Date.now(),
  };
  const recipients = [...connections];
  // All at once: one slow or gone recipient does not hold up the others.
  const results = await Promise.all(recipients.map((id) => send(event, id, payload)));
  const delivered = results.filter(Boolean).length;
  console.log(`message from ${rc.connectionId} delivered to ${delivered}/${recipients.length}`);
}

const ROUTES = {
  $connect: async (event) => {
    connections.add(event.requestContext.connectionId);
  },
  $disconnect: async (event) => {
    connections.delete(event.requestContext.connectionId);
  },
  sendMessage: onSendMessage,
  $default: onDefault,
};

// The Lambda handler (on AWS: `export const handler = ...` in index.mjs).
export async function handler(event) {
  const { routeKey, connectionId } = event.requestContext;
  console.log(`${routeKey} ${connectionId}`);
  const action = ROUTES[routeKey];
  if (action === undefined) {
    console.warn(`no handler for route ${routeKey}`);
    return { statusCode: 400 };
  }
  await action(event);
  return { statusCode: 200 };
}

// -- the HTTP integration: POST event JSON in, Lambda result JSON out --------------------------
function reply(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  if (req.method !== "POST") {
    reply(res, 405, { errorMessage: "POST the event as JSON" });
    return;
  }
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  let event;
  try {
    event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (err) {
    reply(res, 400, { errorMessage: `the request is not JSON: ${err.message}` });
    return;
  }
  try {
    reply(res, 200, (await handler(event)) ?? null);
  } catch (err) {
    // A handler failure: any non-2xx status tells hubbub so (502 on $connect, the
    // "Internal server error" frame on a message). The body is for hubbub's log.
    console.error(err);
    reply(res, 500, { errorType: err?.name ?? "Error", errorMessage: String(err?.message ?? err) });
  }
});

const port = Number(process.env.PORT ?? 9000);
const host = process.env.HOST || "127.0.0.1";
server.listen(port, host, () => {
  const { port: bound } = server.address();
  console.log(`listening on http://${host}:${bound}/`);
});

// Stop cleanly on Ctrl-C and on the SIGTERM of process managers and test harnesses.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
  });
}
