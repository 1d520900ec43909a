// process.env._X_AMZN_TRACE_ID, set per invocation as Lambda's runtime sets it, without leaking.
//
// Every write to process.env is a setenv(3), and glibc's setenv keeps every distinct
// "NAME=value" string it was ever given (so that pointers getenv returned stay valid): a fresh
// trace id per invocation grew an execution environment by ~140 bytes per invocation, for as
// long as it lived (about 140 MB per million invocations; Lambda recycles its environments,
// hubbub keeps them). So process.env becomes a Proxy of itself that holds this one variable in
// JavaScript: handlers, libraries (the X-Ray SDK, Powertools) and child processes (child_process
// copies process.env) see it as before; only native code calling getenv(3) does not.
"use strict";

const NAME = "_X_AMZN_TRACE_ID";

// Installs the Proxy (once) and returns the setter the bootstrap calls per invocation:
// set(value) with the Lambda-Runtime-Trace-Id header, or set(undefined) without one.
function install() {
  const real = process.env;
  // Inherited from hubbub's own environment, or set before install: held here from now on.
  let trace = real[NAME];
  if (trace !== undefined) {
    delete real[NAME]; // unsetenv: frees nothing, but adds nothing either
  }
  const descriptor = () => ({ value: trace, writable: true, enumerable: true, configurable: true });
  process.env = new Proxy(real, {
    get(target, key) {
      return key === NAME ? trace : Reflect.get(target, key);
    },
    set(target, key, value) {
      if (key !== NAME) {
        return Reflect.set(target, key, value);
      }
      trace = String(value); // as process.env stores every value: a string
      return true;
    },
    has(target, key) {
      return key === NAME ? trace !== undefined : Reflect.has(target, key);
    },
    deleteProperty(target, key) {
      if (key !== NAME) {
        return Reflect.deleteProperty(target, key);
      }
      trace = undefined;
      return true;
    },
    defineProperty(target, key, attributes) {
      if (key !== NAME) {
        return Reflect.defineProperty(target, key, attributes);
      }
      trace = String(attributes.value);
      return true;
    },
    ownKeys(target) {
      const keys = Reflect.ownKeys(target);
      if (trace !== undefined) {
        keys.push(NAME);
      }
      return keys;
    },
    getOwnPropertyDescriptor(target, key) {
      if (key !== NAME) {
        return Reflect.getOwnPropertyDescriptor(target, key);
      }
      return trace === undefined ? undefined : descriptor();
    },
  });
  return (value) => {
    trace = value === undefined || value === null ? undefined : String(value);
  };
}

module.exports = { install, NAME };
