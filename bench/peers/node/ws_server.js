// Node `ws` peer: echo and a broadcast room, same protocol as bench/peers/bare_picows.py.
// Run: node ws_server.js --port 0   (prints "READY ws://host:port/")
"use strict";
const { WebSocketServer } = require("ws");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const host = opt("--host", "127.0.0.1");
const port = Number(opt("--port", "0"));

const ACTION_AT = '{"action":"'.length;
const JOIN = "j".charCodeAt(0);
const PUBLISH = "p".charCodeAt(0);
const JOINED = '{"joined":true}';
const members = new Set();

const wss = new WebSocketServer({ host, port, perMessageDeflate: false, backlog: 4096 });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    const action = data.length > ACTION_AT ? data[ACTION_AT] : 0;
    if (action === PUBLISH) {
      for (const member of members) member.send(data, { binary: false });
    } else if (action === JOIN) {
      members.add(ws);
      ws.send(JOINED);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on("close", () => members.delete(ws));
  ws.on("error", () => members.delete(ws));
});
wss.on("listening", () => {
  const a = wss.address();
  console.log(`READY ws://${a.address}:${a.port}/`);
});
