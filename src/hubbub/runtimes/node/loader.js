// Loading the function's handler from _HANDLER, as Lambda's Node.js runtime does.
//
// "dir/file.export.nested": the module is "dir/file" relative to the code root (LAMBDA_TASK_ROOT),
// the rest a property path into its exports. The module is the first of file.mjs (ES module),
// file.js (ES module when the nearest package.json says "type": "module", else CommonJS),
// file.cjs (CommonJS), or whatever require() finds under that name (a folder, node_modules).
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { pathToFileURL } = require("node:url");
const errors = require("./errors.js");

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

function splitHandler(fullHandler) {
  const base = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.length - base.length);
  const match = base.match(FUNCTION_EXPR);
  if (!match || moduleRoot.includes("..")) {
    throw errors.malformedHandlerName(`Bad handler ${fullHandler}`);
  }
  return { moduleRoot, module: match[1], property: match[2] };
}

function isFile(file) {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

// What Node itself decides for a .js file: the "type" of the nearest package.json.
function nearestTypeIsModule(file) {
  let dir = path.dirname(file);
  for (;;) {
    const candidate = path.join(dir, "package.json");
    if (isFile(candidate)) {
      try {
        return JSON.parse(fs.readFileSync(candidate, "utf8")).type === "module";
      } catch {
        return false; // Node refuses an unreadable package.json itself, at import
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      return false;
    }
    dir = parent;
  }
}

async function importModule(file) {
  return import(pathToFileURL(file).href);
}

async function loadModule(base) {
  if (isFile(`${base}.mjs`)) {
    return importModule(`${base}.mjs`);
  }
  if (isFile(`${base}.js`)) {
    return nearestTypeIsModule(`${base}.js`) ? importModule(`${base}.js`) : require(`${base}.js`);
  }
  if (isFile(`${base}.cjs`)) {
    return require(`${base}.cjs`);
  }
  return require(base); // a folder with index.js, a package in node_modules: Node's own rules
}

function isNotFound(error) {
  return error?.code === "MODULE_NOT_FOUND" || error?.code === "ERR_MODULE_NOT_FOUND";
}

// The handler function, or a Runtime.* error (thrown) saying why not.
async function loadHandler(appRoot, fullHandler) {
  const { moduleRoot, module, property } = splitHandler(fullHandler);
  const base = path.resolve(appRoot, moduleRoot, module);
  let exported;
  try {
    exported = await loadModule(base);
  } catch (error) {
    if (error instanceof SyntaxError) {
      throw errors.userCodeSyntaxError(error);
    }
    if (isNotFound(error)) {
      throw errors.importModuleError(error);
    }
    throw error; // the module's own top-level code failed: reported as it is
  }
  const handler = property.split(".").reduce((object, key) => object?.[key], exported);
  if (handler === undefined || handler === null) {
    throw errors.handlerNotFound(`${fullHandler} is undefined or not exported`);
  }
  if (typeof handler !== "function") {
    throw errors.handlerNotFound(`${fullHandler} is not a function`);
  }
  return handler;
}

module.exports = { loadHandler, splitHandler, nearestTypeIsModule };
