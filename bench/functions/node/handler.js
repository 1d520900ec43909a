// The Node.js Lambda function of the benchmark's runtime rows: hubbub runs this file through
// the Lambda Runtime API (bench/hubbub_app/hubbub-runtimes.toml) and serverless-offline runs
// the same file (bench/peers/sls_node/serverless.yml). Unchanged AWS code: nothing in it knows
// which of the two it runs under.
'use strict';

const {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} = require('@aws-sdk/client-apigatewaymanagementapi');

// Two-way route (route responses on): the body goes back to the caller.
exports.echo = async (event) => {
  return { statusCode: 200, body: event.body };
};

// The seed's pattern with the JavaScript SDK v3: post the reply back to the sender through the
// management API. One client per execution environment, created on first use and reused, as
// Lambda code usually does.
let client = null;

exports.post = async (event) => {
  const ctx = event.requestContext;
  if (client === null) {
    const endpoint = process.env.WEBSOCKET_ENDPOINT || `https://${ctx.domainName}/${ctx.stage}`;
    client = new ApiGatewayManagementApiClient({ endpoint });
  }
  await client.send(
    new PostToConnectionCommand({ ConnectionId: ctx.connectionId, Data: event.body }),
  );
  return { statusCode: 200 };
};

// $connect for serverless-offline, which refuses connections without one.
exports.connect = async () => ({ statusCode: 200 });
