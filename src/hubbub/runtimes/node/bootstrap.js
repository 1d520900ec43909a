// hubbub's Node.js runtime: runs an unchanged Lambda handler through the Lambda Runtime API.
//
//   node bootstrap.js      (hubbub starts it with cwd = the function's code root and
//                           AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_* set)
//
// It does what Lambda's own Node.js runtime does, with the standard library only (npm's
// aws-lambda-ric compiles libcurl and aws-lambda-cpp at install time): load the handler
// (loader.js), then loop on GET /invocation/next, call the handler with the event and a context,
// and POST the result to /invocation/{id}/response or the error to /invocation/{id}/error.
// A handler that cannot be loaded is reported once to /init/error and the process exits.
//
// Handlers may return a promise (async) or call the callback (event, context, callback). A
// callback's result is sent when the event loop is empty, as on Lambda, unless
// context.callbackWaitsForEmptyEventLoop is false; context.done/succeed/fail send at once.
"use strict";

const errors = require("./errors.js");
const logging = require("./logging.js");
const loader = require("./loader.js");
const awsSdkV2 = require("./aws_sdk_v2.js");
const awsSdkV3 = require("./aws_sdk_v3.js");
const { RuntimeApi } = require("./runtime_api.js");
const traceEnv = require("./trace_env.js");

const api = new RuntimeApi(process.env.AWS_LAMBDA_RUNTIME_API || "127.0.0.1:9001");

// What an uncaught exception or unhandled rejection does: during init it is an init error, during
// an invocation that invocation's error; either way the process then exits, as on Lambda (the
// execution environment is replaced).
let onFatal = (error, code) => {
  api.postInitError(error).finally(() => process.exit(code));
};

process.on("uncaughtException", (error) => {
  console.error("Uncaught Exception", errors.toFormatted(error));
  onFatal(error, 129);
});
process.on("unhandledRejection", (reason) => {
  const error = errors.unhandledPromiseRejection(reason);
  console.error("Unhandled Promise Rejection", errors.toFormatted(error));
  onFatal(error, 128);
});

// "When the event loop is empty": Node emits beforeExit then. Between invocations the loop is
// never empty (the /invocation/next request is pending), so this fires only while a callback
// result waits.
let onEmptyLoop = null;
process.on("beforeExit", () => {
  const run = onEmptyLoop;
  onEmptyLoop = null;
  if (run) {
    setImmediate(run);
  }
});

function parseJson(text, what) {
  if (text === undefined || text === "") {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`Cannot parse ${what} as JSON: ${error.message}`);
  }
}

// The context the handler gets. ``callbacks`` has what depends on the invocation's state: the
// callbackWaitsForEmptyEventLoop flag (get/set) and done, succeed, fail. One object literal, built
// in one go (copying property descriptors onto it made V8 turn it into a slow dictionary object).
function makeContext(headers, callbacks) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"]);
  const env = process.env;
  return {
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION || "$LATEST",
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJson(headers["lambda-runtime-client-context"], "ClientContext"),
    identity: parseJson(headers["lambda-runtime-cognito-identity"], "CognitoIdentity"),
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    get callbackWaitsForEmptyEventLoop() {
      return callbacks.waits();
    },
    set callbackWaitsForEmptyEventLoop(value) {
      callbacks.setWaits(value);
    },
    done: callbacks.done,
    succeed: callbacks.succeed,
    fail: callbacks.fail,
  };
}

// One invocation: resolves once its result or error has been sent (its 202 comes later).
function invoke(handler, invocation) {
  return new Promise((resolve) => {
    const requestId = invocation.headers["lambda-runtime-aws-request-id"];
    let finished = false;
    let waitForEmptyLoop = true;

    const complete = (error, result) => {
      if (finished) {
        return;
      }
      finished = true;
      onEmptyLoop = null;
      let posted;
      if (error !== null && error !== undefined) {
        console.error("Invoke Error", errors.toFormatted(error));
        posted = api.postError(requestId, error);
      } else {
        try {
          posted = api.postResponse(requestId, result);
        } catch (serialize) {
          const failure = new Error(`Unable to stringify response body: ${serialize.message}`);
          console.error("Invoke Error", errors.toFormatted(failure));
          posted = api.postError(requestId, failure);
        }
      }
      posted.catch((cause) => {
        console.error("Runtime API request failed", errors.toFormatted(cause));
        process.exit(1); // hubbub lost track of us: let it replace this environment
      });
      // The request is written: GET .../next goes out right behind it on the same connection
      // (pipelined), rather than after its 202.
      resolve();
    };

    // The first of callback, done, succeed, fail (or the returned promise) gives the answer.
    let answered = false;
    const callback = (error, result) => {
      if (answered || finished) {
        return;
      }
      answered = true;
      if (error !== null && error !== undefined) {
        complete(error);
      } else if (!waitForEmptyLoop) {
        complete(null, result);
      } else {
        onEmptyLoop = () => complete(null, result);
      }
    };
    const done = (error, result) => {
      if (!answered) {
        waitForEmptyLoop = false;
      }
      callback(error, result);
    };
    const callbacks = {
      waits: () => waitForEmptyLoop,
      setWaits: (value) => {
        waitForEmptyLoop = Boolean(value);
      },
      done,
      succeed: (result) => done(null, result),
      fail: (error) => done(error === undefined || error === null ? "handled" : error, null),
    };

    onFatal = (error, code) => {
      if (finished) {
        process.exit(code); // answered already: nothing to report, the environment ends
      }
      finished = true;
      api.postError(requestId, error).finally(() => process.exit(code));
    };
    // A handler that neither returns a promise nor calls back answers null once the event loop
    // is empty, as on Lambda.
    onEmptyLoop = () => complete(null, null);
    logging.setRequestId(requestId);
    setTraceId(invocation.headers["lambda-runtime-trace-id"] || undefined);
    try {
      const event = JSON.parse(invocation.body);
      const context = makeContext(invocation.headers, callbacks);
      const result = handler(event, context, callback);
      if (result !== null && typeof result === "object" && typeof result.then === "function") {
        result.then(callbacks.succeed, callbacks.fail);
      }
    } catch (error) {
      done(error);
    }
  });
}

// process.env._X_AMZN_TRACE_ID of each invocation (trace_env.js: without a setenv per
// invocation, which would leak). Installed before anything loads the handler, so that it sees
// the Proxy however it reaches process.env (an ESM import of node:process included).
let setTraceId = () => {};

async function main() {
  setTraceId = traceEnv.install();
  logging.patchConsole();
  awsSdkV2.install();
  awsSdkV3.install();
  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  let handler;
  try {
    handler = await loader.loadHandler(appRoot, process.env._HANDLER || "");
  } catch (error) {
    console.error("Uncaught Exception", errors.toFormatted(error));
    onFatal(error, 129);
    return;
  }
  for (;;) {
    const invocation = await api.next();
    // The request id stays in log lines until the next invocation (a timer that logs after the
    // response), as on Lambda.
    await invoke(handler, invocation);
  }
}

main().catch((error) => {
  console.error("Runtime API request failed", errors.toFormatted(error));
  process.exit(1);
});
