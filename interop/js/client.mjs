#!/usr/bin/env node
// JS rendezvous CLIENT for interop tests: @canvas-js/libp2p-rendezvous 0.5.2 on js-libp2p 2.x,
// driven by JSON lines on stdin; one JSON result line per command on stdout.
//
//   node client.mjs [--protocol ID] [--listen MA] [--timeout MS]
//
// Commands are handled one at a time, in order. Every command may carry "tag"
// (echoed back) and "timeoutMs". See NOTES.md for the full protocol.
//   {"op":"id"}
//   {"op":"connect","multiaddr":"/ip4/127.0.0.1/tcp/N/p2p/<id>"}
//   {"op":"register","ns":"x","ttl":7200}            (canvas API, one stream)
//   {"op":"discover","ns":"x","limit":10}            (canvas API, one stream)
//   {"op":"unregister","ns":"x","holdMs":0,"flush":false} (canvas API, one stream)
//   {"op":"pipeline","requests":[{"op":"register",...},{"op":"discover",...}],"concurrent":false,"holdMs":0}
//   {"op":"raw","requests":[{"type":"DISCOVER","ns":"x","limit":5,"cookie":"<hex>"}]}
//   {"op":"disconnect"}
//   {"op":"quit"}
// register/discover/unregister/pipeline/raw use the point of the last "connect"
// unless the command names its own "multiaddr".
import './polyfill.mjs'
import readline from 'node:readline'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromPublicKey } from '@libp2p/peer-id'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import * as lp from 'it-length-prefixed'
import { pushable } from 'it-pushable'
import { RendezvousClient, rendezvousClient } from '@canvas-js/libp2p-rendezvous/client'
import { Message } from '@canvas-js/libp2p-rendezvous/protocol'
import { SPEC_PROTOCOL, log, parseArgs, makeNode, exitOn, shutdown } from './common.mjs'

let node = null
exitOn((reason) => shutdown(node, reason), { watchStdin: false })

const args = parseArgs(process.argv.slice(2), { repeatable: ['listen'] })
const protocol = args.protocol ?? SPEC_PROTOCOL
const listen = args.listen ?? ['/ip4/127.0.0.1/tcp/0']
const defaultTimeout = Number(args.timeout ?? 10_000)

// The canvas package has no protocol option: static field, read in beforeStart()
// (topology) and on every connect() (newStream). Set before the node starts.
RendezvousClient.protocol = protocol

const privateKey = await generateKeyPair('Ed25519')
// autoDiscover only acts on autoRegister namespaces; there are none here.
node = await makeNode({ listen, privateKey, services: { rendezvous: rendezvousClient({ autoDiscover: false }) } })
const svc = node.services.rendezvous
log(`canvas rendezvous client ${node.peerId} protocol=${protocol} addrs=${JSON.stringify(node.getMultiaddrs().map(String))}`)

let point = null // Multiaddr of the last connected rendezvous point

// ---------- helpers ----------

const toHex = (u8) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString('hex')
const fromHex = (s) => new Uint8Array(Buffer.from(s ?? '', 'hex'))
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

class TimeoutError extends Error {
  constructor (ms) { super(`timeout after ${ms} ms`); this.name = 'TimeoutError' }
}

async function withTimeout (promise, ms, onTimeout) {
  let timer
  const t = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      try { onTimeout?.() } catch {}
      reject(new TimeoutError(ms))
    }, ms)
  })
  try {
    return await Promise.race([promise, t])
  } finally {
    clearTimeout(timer)
  }
}

function errResult (err) {
  const msg = err?.message ?? String(err)
  const out = { ok: false, error: msg, errorName: err?.name ?? 'Error' }
  // the canvas client throws new Error(status) for a non-OK status
  if (/^E_[A-Z_]+$/.test(msg)) out.status = msg
  return out
}

function targetOf (cmd) {
  if (cmd.multiaddr != null) return multiaddr(cmd.multiaddr)
  if (point == null) throw new Error('not connected: send {"op":"connect","multiaddr":...} first')
  return point
}

function decodeRecord (bytes) {
  const env = RecordEnvelope.createFromProtobuf(bytes)
  const rec = PeerRecord.createFromProtobuf(env.payload)
  return { peerId: rec.peerId.toString(), multiaddrs: rec.multiaddrs.map(String), seq: Number(rec.seqNumber) }
}

// what canvas' point.discover() returns: libp2p Peer objects (merged into the peer store)
function peerToJSON (peer, ns) {
  let multiaddrs = peer.addresses.map(a => a.multiaddr.toString())
  if (peer.peerRecordEnvelope != null) {
    try { multiaddrs = decodeRecord(peer.peerRecordEnvelope).multiaddrs } catch {}
  }
  // the canvas client drops ns (asserted equal to the one asked) and ttl
  return { peerId: peer.id.toString(), multiaddrs, ns, ttl: null }
}

function addrsOf (cmd) {
  return cmd.multiaddrs != null ? cmd.multiaddrs.map(a => multiaddr(a)) : undefined
}

// One canvas request on an open RendezvousPoint.
async function pointRequest (p, req) {
  switch (req.op) {
    case 'register': {
      const opts = { ttl: req.ttl ?? null }
      const addrs = addrsOf(req)
      if (addrs) opts.multiaddrs = addrs
      const { ttl } = await p.register(req.ns, opts)
      return { ok: true, ttl }
    }
    case 'discover': {
      const opts = {}
      if (req.limit != null) opts.limit = req.limit
      const peers = await p.discover(req.ns ?? '', opts)
      const registrations = peers.map(peer => peerToJSON(peer, req.ns ?? ''))
      return { ok: true, count: registrations.length, registrations }
    }
    case 'unregister': {
      await p.unregister(req.ns)
      // canvas pushes UNREGISTER and returns at once; closing the stream right
      // after drops it unsent. flush: send a DISCOVER on the same stream and wait
      // for its response, so the UNREGISTER has been written (and, servers
      // answering in order, processed) before the stream closes.
      if (req.flush) await p.discover(req.ns, { limit: 1 })
      return { ok: true }
    }
    default:
      throw new Error(`op ${req.op} not allowed here`)
  }
}

// ---------- ops ----------

async function opConnect (cmd, signal) {
  const ma = multiaddr(cmd.multiaddr)
  const expected = ma.getPeerId()
  // wait (briefly) for identify so we can report the remote's protocols
  let onIdentify
  const identified = new Promise(resolve => {
    onIdentify = (e) => { if (expected == null || e.detail.peerId.toString() === expected) resolve(e.detail) }
    node.addEventListener('peer:identify', onIdentify)
  })
  try {
    const already = expected != null && node.getConnections().some(c => c.remotePeer.toString() === expected)
    const conn = await node.dial(ma, { signal })
    point = ma
    let protocols = null
    if (!already) {
      const info = await Promise.race([identified, sleep(cmd.identifyWaitMs ?? 2000).then(() => null)])
      protocols = info?.protocols ?? null
    }
    if (protocols == null) {
      try { protocols = (await node.peerStore.get(conn.remotePeer)).protocols } catch {}
    }
    return {
      ok: true,
      peerId: conn.remotePeer.toString(),
      remoteAddr: conn.remoteAddr.toString(),
      protocols
    }
  } finally {
    node.removeEventListener('peer:identify', onIdentify)
  }
}

// one canvas stream for one request
async function opSingle (cmd) {
  const target = targetOf(cmd)
  return await svc.connect(target, async (p) => {
    const res = await pointRequest(p, cmd)
    if (cmd.holdMs > 0) await sleep(cmd.holdMs)
    return res
  })
}

// several requests on ONE canvas stream (svc.connect callback).
//   concurrent=false: each request waits for its response before the next is sent.
//   concurrent=true: all are issued at once; canvas matches responses by order.
//     (REGISTER is queued after signing, so on the wire it may go after a later DISCOVER.)
//   holdMs: keep the stream open that long after the last request before canvas closes it.
async function opPipeline (cmd) {
  const target = targetOf(cmd)
  const reqs = cmd.requests ?? []
  return await svc.connect(target, async (p) => {
    let results
    if (cmd.concurrent) {
      results = await Promise.all(reqs.map(r => pointRequest(p, r).catch(errResult)))
    } else {
      results = []
      let failed = false
      for (const r of reqs) {
        if (failed) { results.push({ ok: false, error: 'skipped after an earlier failure', errorName: 'Skipped' }); continue }
        try {
          results.push(await pointRequest(p, r))
        } catch (err) {
          failed = true
          results.push(errResult(err))
        }
      }
    }
    if (cmd.holdMs > 0) await sleep(cmd.holdMs)
    return { ok: results.every(r => r.ok), results }
  })
}

// RAW: the canvas *codec* (proto3-style: zero/empty fields omitted) on a stream we
// drive ourselves, so cookies, granted/remaining TTLs and statuses are visible.
// Requests are all written first (pipelined), then one response is read per
// REGISTER/DISCOVER. "ns":"" means the field is absent on the wire.
async function buildRaw (r) {
  switch (r.type) {
    case 'REGISTER': {
      let key = privateKey
      if (r.signer === 'random') key = await generateKeyPair('Ed25519')
      const peerId = peerIdFromPrivateKey(key)
      const multiaddrs = r.multiaddrs != null ? r.multiaddrs.map(a => multiaddr(a)) : node.getMultiaddrs()
      const record = new PeerRecord({ peerId, multiaddrs })
      const env = await RecordEnvelope.seal(record, key)
      return { type: Message.MessageType.REGISTER, register: { ns: r.ns ?? '', signedPeerRecord: env.marshal(), ttl: BigInt(r.ttl ?? 0) } }
    }
    case 'DISCOVER':
      return { type: Message.MessageType.DISCOVER, discover: { ns: r.ns ?? '', limit: BigInt(r.limit ?? 0), cookie: fromHex(r.cookie) } }
    case 'UNREGISTER':
      return { type: Message.MessageType.UNREGISTER, unregister: { ns: r.ns ?? '' } }
    default:
      throw new Error(`raw: unknown type ${r.type}`)
  }
}

async function rawResponseToJSON (m) {
  const out = { type: m.type }
  if (m.registerResponse != null) {
    const r = m.registerResponse
    Object.assign(out, { status: r.status, statusText: r.statusText, ttl: Number(r.ttl) })
  }
  if (m.discoverResponse != null) {
    const r = m.discoverResponse
    const registrations = []
    for (const reg of r.registrations) {
      const item = { ns: reg.ns, ttl: Number(reg.ttl) }
      try {
        const env = await RecordEnvelope.openAndCertify(reg.signedPeerRecord, PeerRecord.DOMAIN)
        const rec = PeerRecord.createFromProtobuf(env.payload)
        Object.assign(item, { peerId: rec.peerId.toString(), multiaddrs: rec.multiaddrs.map(String), signer: peerIdFromPublicKey(env.publicKey).toString() })
      } catch (err) {
        item.recordError = String(err?.message ?? err)
        try { Object.assign(item, decodeRecord(reg.signedPeerRecord)) } catch {}
      }
      registrations.push(item)
    }
    Object.assign(out, { status: r.status, statusText: r.statusText, cookie: toHex(r.cookie), count: registrations.length, registrations })
  }
  return out
}

async function opRaw (cmd, timeoutMs) {
  const target = targetOf(cmd)
  const reqs = cmd.requests ?? []
  const msgs = []
  for (const r of reqs) msgs.push(await buildRaw(r))
  const expected = msgs.filter(m => m.type !== Message.MessageType.UNREGISTER).length

  const conn = await node.dial(target)
  const stream = await conn.newStream(cmd.protocol ?? protocol, { signal: AbortSignal.timeout(timeoutMs) })
  const out = pushable()
  const sinkDone = stream.sink(lp.encode(out)).catch(err => { log('raw sink error:', String(err)) })
  const src = lp.decode(stream.source)[Symbol.asyncIterator]()
  const responses = []
  try {
    for (const m of msgs) out.push(Message.encode(m))
    for (let i = 0; i < expected; i++) {
      const { done, value } = await src.next()
      if (done) throw new Error(`stream ended after ${responses.length} of ${expected} responses`)
      responses.push(await rawResponseToJSON(Message.decode(value.subarray())))
    }
    if (cmd.holdMs > 0) await sleep(cmd.holdMs)
    out.end()
    await sinkDone
    await stream.close()
    return { ok: true, responses }
  } catch (err) {
    out.end()
    stream.abort(err)
    return { ...errResult(err), responses }
  }
}

async function handle (cmd) {
  const timeoutMs = Number(cmd.timeoutMs ?? defaultTimeout)
  const hangUpPoint = () => {
    // unstick a canvas stream that waits forever for a response
    try {
      const pid = (cmd.multiaddr != null ? multiaddr(cmd.multiaddr) : point)?.getPeerId()
      if (pid != null) {
        for (const c of node.getConnections()) if (c.remotePeer.toString() === pid) c.abort(new Error('client op timeout'))
      }
    } catch {}
  }
  switch (cmd.op) {
    case 'id':
      return { ok: true, peerId: node.peerId.toString(), multiaddrs: node.getMultiaddrs().map(String), protocol }
    case 'connect':
      return await withTimeout(opConnect(cmd, AbortSignal.timeout(timeoutMs)), timeoutMs + 100)
    case 'register':
    case 'discover':
    case 'unregister':
      return await withTimeout(opSingle(cmd), timeoutMs, hangUpPoint)
    case 'pipeline':
      return await withTimeout(opPipeline(cmd), timeoutMs, hangUpPoint)
    case 'raw':
      return await withTimeout(opRaw(cmd, timeoutMs), timeoutMs + 100, hangUpPoint)
    case 'disconnect': {
      const target = targetOf(cmd)
      await node.hangUp(target)
      if (cmd.multiaddr == null) point = null
      return { ok: true }
    }
    case 'quit':
      return { ok: true }
    default:
      throw new Error(`unknown op ${JSON.stringify(cmd.op)}`)
  }
}

// ---------- main loop: one command at a time ----------

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false })
let quitting = false
for await (const line of rl) {
  if (line.trim() === '') continue
  let cmd
  let res
  try {
    cmd = JSON.parse(line)
    if (cmd == null || typeof cmd !== 'object') throw new Error('command must be a JSON object')
    res = await handle(cmd)
  } catch (err) {
    res = errResult(err)
  }
  if (cmd?.tag !== undefined) res = { tag: cmd.tag, ...res }
  process.stdout.write(JSON.stringify(res) + '\n')
  if (cmd?.op === 'quit') { quitting = true; break }
}
rl.close()
await shutdown(node, quitting ? 'quit' : 'stdin closed')
