// Lambda's error shapes, as the Node.js runtime reports them.
//
// An invocation error goes to /invocation/{id}/error as {errorType, errorMessage, trace} with the
// Lambda-Runtime-Function-Error-Type header; init failures go to /init/error the same way with
// the Runtime.* types below. The log line is Lambda's too: "Invoke Error" / "Uncaught Exception"
// followed by the error as JSON with a "stack" array.
"use strict";

const util = require("node:util");

class RuntimeError extends Error {
  constructor(name, message, cause) {
    super(message);
    this.name = name;
    if (cause !== undefined && cause !== null && typeof cause.stack === "string") {
      // Lambda keeps the user's stack: that is where the problem is.
      this.stack = `${name}: ${message}\n${cause.stack.split("\n").slice(1).join("\n")}`;
    }
  }
}

const importModuleError = (cause) =>
  new RuntimeError("Runtime.ImportModuleError", String(cause), cause);
const userCodeSyntaxError = (cause) =>
  new RuntimeError("Runtime.UserCodeSyntaxError", String(cause), cause);
const handlerNotFound = (message) => new RuntimeError("Runtime.HandlerNotFound", message);
const malformedHandlerName = (message) =>
  new RuntimeError("Runtime.MalformedHandlerName", message);
const unhandledPromiseRejection = (reason) =>
  new RuntimeError(
    "Runtime.UnhandledPromiseRejection",
    reason instanceof Error ? String(reason) : util.format("%s", reason),
    reason instanceof Error ? reason : undefined,
  );

function isError(value) {
  return (
    util.types.isNativeError(value) ||
    (value !== null &&
      typeof value === "object" &&
      typeof value.name === "string" &&
      typeof value.message === "string" &&
      typeof value.stack === "string")
  );
}

// The body of /invocation/{id}/error and /init/error.
function toRapidResponse(error) {
  try {
    if (isError(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split("\n"),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: "handled",
      errorMessage:
        "callback called with Error argument, but there was a problem while retrieving one or " +
        "more of its message, name, and stack",
    };
  }
}

// The JSON the log line carries: the error's own enumerable fields too (an AWS SDK error's
// code and statusCode), and its stack as a list of lines.
function toFormatted(error) {
  try {
    if (!isError(error)) {
      return "\t" + JSON.stringify(toRapidResponse(error));
    }
    const out = { errorType: error.name, errorMessage: error.message };
    for (const key of Object.keys(error)) {
      if (!(key in out) && !["name", "message", "stack"].includes(key)) {
        out[key] = error[key];
      }
    }
    out.stack = error.stack.split("\n");
    return "\t" + JSON.stringify(out);
  } catch {
    return "\t" + JSON.stringify(toRapidResponse(error));
  }
}

module.exports = {
  importModuleError,
  userCodeSyntaxError,
  handlerNotFound,
  malformedHandlerName,
  unhandledPromiseRejection,
  toRapidResponse,
  toFormatted,
};
