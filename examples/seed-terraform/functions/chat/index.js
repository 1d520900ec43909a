const AWS = require('aws-sdk');

const ddb = new AWS.DynamoDB.DocumentClient({ apiVersion: '2012-08-10', region: process.env.AWS_REGION });

const { CONNECTIONS_TABLE } = process.env;

exports.handler = async (event) => {
  const { routeKey, connectionId } = event.requestContext;

  if (routeKey === '$connect') {
    try {
      await ddb.put({ TableName: CONNECTIONS_TABLE, Item: { connectionId } }).promise();
    } catch (err) {
      return { statusCode: 500, body: 'Failed to connect: ' + JSON.stringify(err) };
    }
    return { statusCode: 200, body: 'Connected.' };
  }

  if (routeKey === '$disconnect') {
    try {
      await ddb.delete({ TableName: CONNECTIONS_TABLE, Key: { connectionId } }).promise();
    } catch (err) {
      return { statusCode: 500, body: 'Failed to disconnect: ' + JSON.stringify(err) };
    }
    return { statusCode: 200, body: 'Disconnected.' };
  }

  if (routeKey === 'sendmessage') {
    let connectionData;
    try {
      connectionData = await ddb.scan({ TableName: CONNECTIONS_TABLE, ProjectionExpression: 'connectionId' }).promise();
    } catch (e) {
      return { statusCode: 500, body: e.stack };
    }

    const apigwManagementApi = new AWS.ApiGatewayManagementApi({
      apiVersion: '2018-11-29',
      endpoint: process.env.WEBSOCKET_ENDPOINT
    });

    const postData = JSON.parse(event.body).data;

    const postCalls = connectionData.Items.map(async ({ connectionId }) => {
      try {
        await apigwManagementApi.postToConnection({ ConnectionId: connectionId, Data: postData }).promise();
      } catch (e) {
        if (e.statusCode === 410) {
          console.log(`Found stale connection, deleting ${connectionId}`);
          await ddb.delete({ TableName: CONNECTIONS_TABLE, Key: { connectionId } }).promise();
        } else {
          throw e;
        }
      }
    });

    try {
      await Promise.all(postCalls);
    } catch (e) {
      return { statusCode: 500, body: e.stack };
    }

    return { statusCode: 200, body: 'Data sent.' };
  }

  return { statusCode: 400, body: 'Unknown route: ' + routeKey };
};
