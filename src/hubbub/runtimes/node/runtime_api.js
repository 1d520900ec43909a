// A client of the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API = "host:port"), node:http only.
"use strict";

const http = require("node:http");
const { toRapidResponse } = require("./errors.js");

const PREFIX = "/2018-06-01/runtime";

class RuntimeApi {
  constructor(address) {
    const at = address.lastIndexOf(":");
    this.host = at > 0 ? address.slice(0, at).replace(/^\[|\]$/g, "") : address;
    this.port = at > 0 ? Number(address.slice(at + 1)) : 80;
    // Idle sockets in a keep-alive agent are unref'd: they never keep the event loop busy,
    // so waiting for an empty event loop (callbackWaitsForEmptyEventLoop) still works. No limit
    // on sockets: an error report must not queue behind the long poll of invocation/next.
    this.agent = new http.Agent({ keepAlive: true });
  }

  request(method, path, body, headers = {}) {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(body, "utf8");
      const req = http.request(
        {
          host: this.host,
          port: this.port,
          method,
          path: PREFIX + path,
          agent: this.agent,
          headers: {
            ...headers,
            ...(payload ? { "Content-Type": "application/json" } : {}),
            ...(payload ? { "Content-Length": payload.length } : {}),
          },
        },
        (res) => {
          const chunks = [];
          res.on("data", (chunk) => chunks.push(chunk));
          res.on("end", () =>
            resolve({
              status: res.statusCode,
              headers: res.headers,
              body: Buffer.concat(chunks).toString("utf8"),
            }),
          );
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  async next() {
    const res = await this.request("GET", "/invocation/next");
    if (res.status !== 200) {
      throw new Error(`the Runtime API answered ${res.status} to invocation/next: ${res.body}`);
    }
    return res;
  }

  // Not async: a result JSON cannot represent (a cycle, a BigInt) throws here, synchronously,
  // so that the caller reports it as the invocation's error.
  postResponse(requestId, result) {
    const body = JSON.stringify(result === undefined ? null : result);
    return this.request("POST", `/invocation/${encodeURIComponent(requestId)}/response`, body);
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

module.exports = { RuntimeApi };
