// console.* as Lambda's Node.js runtime writes it: one line per call,
//
//   <ISO time>\t<request id>\t<LEVEL>\t<message>
//
// on stdout, newlines inside the message turned into "\r" so a multi-line message (a stack) stays
// one record. hubbub reads these lines and tags them with the function's name; the request id is
// the invocation's (the word "undefined" during init, as on Lambda).
"use strict";

const util = require("node:util");

let currentRequestId;

function setRequestId(id) {
  currentRequestId = id;
}

const LEVELS = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  log: "INFO",
  warn: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

// AWS_LAMBDA_LOG_LEVEL filters like Lambda's advanced logging controls (unset: everything).
const ORDER = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

function format(level, args) {
  const message = util.format(...args);
  const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${message}`;
  return line.replace(/\n/g, "\r") + "\n";
}

function patchConsole(stream = process.stdout) {
  const minimum = ORDER.indexOf(String(process.env.AWS_LAMBDA_LOG_LEVEL || "").toUpperCase());
  for (const [method, level] of Object.entries(LEVELS)) {
    const enabled = minimum < 0 || ORDER.indexOf(level) >= minimum;
    // eslint-disable-next-line no-console
    console[method] = enabled ? (...args) => stream.write(format(level, args)) : () => {};
  }
}

module.exports = { patchConsole, setRequestId, format };
