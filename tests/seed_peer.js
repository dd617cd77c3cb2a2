// A stand-in for a node of the TypeScript seed, written from its README (the seed itself is
// not published here): plain Node.js, no dependencies (Express only with SEED_PEER_EXPRESS,
// as the seed is served; for the benchmarks). It speaks the seed's wire format:
// the bare secret as the Authorization header, {"message": "gossip", online, offline}
// bodies, and the seed's simple merge rule (a newer lastUpdate wins).
// Usage: node seed_peer.js <master-list-file> <interval-seconds>; prints "READY <port>".
'use strict';
const http = require('http');
const fs = require('fs');
const zlib = require('zlib');

const [masterList, intervalArg] = process.argv.slice(2);
const secret = process.env.SHAZBOT_SECRET;
const controlSecret = process.env.SHAZBOT_CONTROL_SECRET;
const interval = parseFloat(intervalArg) * 1000;
let baseUrl = null;
const servers = new Map(); // baseUrl -> {server, online}

function self() { return servers.get(baseUrl).server; }
function state() {
  const online = [], offline = [];
  for (const {server, online: on} of servers.values()) (on ? online : offline).push(server);
  return {online, offline};
}
function merge(list) {
  for (const [key, on] of [['online', true], ['offline', false]]) {
    for (const s of list[key] || []) {
      if (s.baseUrl === baseUrl) continue;
      const known = servers.get(s.baseUrl);
      if (!known || s.lastUpdate > known.server.lastUpdate) servers.set(s.baseUrl, {server: s, online: on});
    }
  }
}
function heartbeat() { servers.get(baseUrl).server = {...self(), lastUpdate: Date.now()}; }

function post(url, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(url + 'clustershazbot/gossip', {
      method: 'POST', timeout: 5000,
      headers: {'Content-Type': 'application/json', 'Authorization': secret,
                'Content-Length': Buffer.byteLength(data)},
    }, (res) => {
      let chunks = '';
      res.on('data', (c) => { chunks += c; });
      res.on('end', () => res.statusCode === 200 ? resolve(JSON.parse(chunks)) : reject(new Error('HTTP ' + res.statusCode)));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

async function round() {
  heartbeat();
  const peers = [...servers.values()].filter((e) => e.online && e.server.baseUrl !== baseUrl);
  if (!peers.length) return;
  const monitors = peers.filter((e) => e.server.monitor);
  const pool = monitors.length && Math.random() < 0.5 ? monitors : peers;
  const peer = pool[Math.floor(Math.random() * pool.length)].server;
  try {
    merge(await post(peer.baseUrl, {message: 'gossip', ...state()}));
  } catch (e) {
    const known = servers.get(peer.baseUrl);
    servers.set(peer.baseUrl, {server: {...known.server, lastUpdate: Date.now()}, online: false});
  }
}

// The seed's two routes: [status, reply] for a request's Authorization header and JSON body.
function gossip(auth, body) {
  if (auth !== secret) return [401, {error: 'Unauthorized'}];
  heartbeat();
  merge(body);
  return [200, {message: 'gossip', ...state()}];
}
function list(auth) {
  const s = state();
  return [200, auth === controlSecret ? s : {online: s.online}];
}

let server;
if (process.env.SEED_PEER_EXPRESS) {
  // As the seed itself is served: Express with express.json() (benchmarks/endpoint.py;
  // needs the express package, e.g. Debian's node-express with NODE_PATH=/usr/share/nodejs).
  const express = require('express');
  const app = express();
  app.use(express.json({limit: '64mb'}));
  const send = (res, [status, obj]) => res.status(status).json(obj);
  app.post('/clustershazbot/gossip', (req, res) => send(res, gossip(req.headers.authorization || '', req.body)));
  app.get('/clustershazbot/list', (req, res) => send(res, list(req.headers.authorization || '')));
  server = http.createServer(app);
} else {
  server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => { chunks.push(c); });
    req.on('end', () => {
      // express.json() (body-parser) inflates a gzip or deflate body as Content-Encoding says.
      const raw = Buffer.concat(chunks);
      const encoding = req.headers['content-encoding'];
      const body = (encoding === 'gzip' ? zlib.gunzipSync(raw)
        : encoding === 'deflate' ? zlib.inflateSync(raw) : raw).toString('utf8');
      const auth = req.headers.authorization || '';
      const reply = ([status, obj]) => { res.writeHead(status, {'Content-Type': 'application/json'}); res.end(JSON.stringify(obj)); };
      if (req.method === 'POST' && req.url === '/clustershazbot/gossip') {
        return reply(gossip(auth, auth === secret ? JSON.parse(body) : null));
      }
      if (req.method === 'GET' && req.url === '/clustershazbot/list') return reply(list(auth));
      reply([404, {error: 'not found'}]);
    });
  });
}

server.listen(0, '127.0.0.1', () => {
  baseUrl = `http://127.0.0.1:${server.address().port}/`;
  servers.set(baseUrl, {server: {baseUrl, monitor: false, lastUpdate: Date.now()}, online: true});
  try { merge(JSON.parse(fs.readFileSync(masterList, 'utf8'))); } catch (e) { /* no list yet */ }
  const tick = () => setTimeout(() => round().finally(tick), interval * (0.9 + 0.2 * Math.random()));
  tick();
  console.log(`READY ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
