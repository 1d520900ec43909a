// Endpoints for the AWS SDK for JavaScript v2 (`aws-sdk`), which reads no endpoint variables.
//
// boto3 and the JavaScript SDK v3 read AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> from the
// environment themselves; v2 does not. hubbub's bootstrap watches require() for v2's AWS object and
// wraps AWS.Service.prototype.initialize, so every client gets what v3 would:
//
// - AWS_ENDPOINT_URL_<SERVICE ID> (the service id upper-cased, spaces as "_": DYNAMODB,
//   APIGATEWAYMANAGEMENTAPI, DYNAMODB_STREAMS), else AWS_ENDPOINT_URL, unless the code names an
//   endpoint itself (constructor, AWS.config, AWS.config.<service>) or
//   AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true;
// - an endpoint on one of the hosts that mean this hubbub API (_HUBBUB_API_HOSTS: the
//   execute-api host names an imported template builds, which no resolver knows) is sent to the
//   management API (_HUBBUB_MANAGEMENT_URL, its plain-HTTP listener), keeping the path (the
//   stage); so is that listener's own "host:port/stage" written without a scheme, which v2
//   would otherwise call with https://. hubbub sets both variables for every function it runs
//   in a process.
"use strict";

const Module = require("node:module");

function serviceEnvName(serviceId) {
  return `AWS_ENDPOINT_URL_${String(serviceId).toUpperCase().replace(/[\s-]+/g, "_")}`;
}

function configuredEndpoint(serviceId, identifier, env = process.env) {
  if (String(env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS || "").toLowerCase() === "true") {
    return undefined;
  }
  for (const name of [serviceId, identifier]) {
    if (name) {
      const value = env[serviceEnvName(name)];
      if (value) {
        return value;
      }
    }
  }
  return env.AWS_ENDPOINT_URL || undefined;
}

function apiHosts(env = process.env) {
  return new Set(
    String(env._HUBBUB_API_HOSTS || "")
      .split(",")
      .map((host) => host.trim().toLowerCase())
      .filter(Boolean),
  );
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

// Whether `endpoint` (an AWS.Endpoint) names the management API's own plain-HTTP listener by
// host and port: "127.0.0.1:8081/production" without a scheme, which v2 turns into https://.
function isManagementListener(endpoint, base) {
  const host = String(endpoint.hostname).toLowerCase();
  const sameHost = host === base.hostname || (LOOPBACK.has(host) && LOOPBACK.has(base.hostname));
  return sameHost && String(endpoint.port) === String(base.port);
}

// The management URL an endpoint on one of the API's own hosts stands for, else undefined.
// `endpoint` is what the SDK made of the code's value: "abc.execute-api.us-east-1.amazonaws.com/
// production" (v2 adds https://) and "https://…/production" alike, or the management listener's
// own host:port/stage.
function managementEndpoint(endpoint, env = process.env) {
  if (!env._HUBBUB_MANAGEMENT_URL || !endpoint || !endpoint.hostname) {
    return undefined;
  }
  let base;
  try {
    base = new URL(env._HUBBUB_MANAGEMENT_URL);
  } catch {
    return undefined;
  }
  const ours =
    apiHosts(env).has(String(endpoint.hostname).toLowerCase()) ||
    (endpoint.protocol !== "http:" && isManagementListener(endpoint, base));
  if (!ours) {
    return undefined;
  }
  const path = endpoint.path && endpoint.path !== "/" ? endpoint.path : "";
  return `${base.protocol}//${base.host}${path}`;
}

function patchAws(AWS) {
  const original = AWS.Service.prototype.initialize;
  AWS.Service.prototype.initialize = function initialize(config) {
    original.call(this, config);
    const explicit =
      (config && config.endpoint) ||
      (AWS.config[this.serviceIdentifier] && AWS.config[this.serviceIdentifier].endpoint) ||
      AWS.config.endpoint;
    if (!explicit) {
      const url = configuredEndpoint(this.api && this.api.serviceId, this.serviceIdentifier);
      if (url) {
        this.config.endpoint = url;
        this.setEndpoint(url);
      }
    }
    const local = managementEndpoint(this.endpoint);
    if (local) {
      this.config.endpoint = local;
      this.setEndpoint(local);
    }
  };
}

function looksLikeAwsSdkV2(exported) {
  // Own properties only: reading a missing one from the half-built exports of a circular
  // require() makes Node print a warning.
  try {
    return (
      exported !== null &&
      typeof exported === "object" &&
      Object.hasOwn(exported, "VERSION") &&
      Object.hasOwn(exported, "Service") &&
      Object.hasOwn(exported, "Config") &&
      typeof exported.VERSION === "string" &&
      exported.VERSION.startsWith("2.") &&
      typeof exported.Service === "function" &&
      typeof exported.Service.prototype.initialize === "function"
    );
  } catch {
    return false;
  }
}

// Watch require() for v2's AWS object (require("aws-sdk"), "aws-sdk/global", a single client's
// "aws-sdk/clients/dynamodb": all return or load lib/core.js). Each copy is patched once.
function install() {
  const patched = new WeakSet();
  const load = Module._load;
  Module._load = function hubbubLoad(request, parent, isMain) {
    const exported = load.call(this, request, parent, isMain);
    if (!patched.has(exported) && looksLikeAwsSdkV2(exported)) {
      patched.add(exported);
      patchAws(exported);
    }
    return exported;
  };
}

module.exports = { install, configuredEndpoint, managementEndpoint, serviceEnvName };
