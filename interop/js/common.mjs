// Shared helpers for server.mjs and client.mjs. Import './polyfill.mjs' before this.
import fs from 'node:fs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'

export const SPEC_PROTOCOL = '/rendezvous/1.0.0'
export const CANVAS_PROTOCOL = '/canvas/rendezvous/1.0.0'
export const MAX_STREAMS = 4096

export function log (...args) {
  process.stderr.write(`[${new Date().toISOString()}] ${args.map(a => typeof a === 'string' ? a : JSON.stringify(a)).join(' ')}\n`)
}

/**
 * Tiny argv parser: `--name value`, `--name=value`, repeated flags become arrays
 * (for names listed in `repeatable`), `--flag` alone is boolean true.
 */
export function parseArgs (argv, { repeatable = [], booleans = [] } = {}) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`)
    let name = a.slice(2)
    let value
    const eq = name.indexOf('=')
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq) } else if (booleans.includes(name)) { value = true } else {
      if (i + 1 >= argv.length) throw new Error(`missing value for --${name}`)
      value = argv[++i]
    }
    if (repeatable.includes(name)) (out[name] ??= []).push(value)
    else out[name] = value
  }
  return out
}

/** Refuse anything but loopback listen addresses. */
export function assertLoopback (addr) {
  if (!/^\/ip4\/127\.\d+\.\d+\.\d+\/|^\/ip6\/::1\//.test(addr)) {
    throw new Error(`refusing to listen on non-loopback address ${addr}`)
  }
}

/**
 * A js-libp2p 2.x node (TCP + Noise + Yamux + identify) with every inbound
 * limit that would bite on loopback lifted.
 */
export async function makeNode ({ listen, services, privateKey }) {
  for (const a of listen) assertLoopback(a)
  return await createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen },
    transports: [tcp({ backlog: 1024 })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS })],
    connectionManager: {
      // loopback bypasses maxIncomingPendingConnections, the per-host
      // inboundConnectionThreshold rate limiter, maxConnections and pruning
      allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128'],
      // and in case a connection comes from elsewhere anyway:
      maxConnections: 100_000,
      maxIncomingPendingConnections: 100_000,
      inboundConnectionThreshold: 100_000,
      maxParallelDials: 1000,
      inboundUpgradeTimeout: 30_000
    },
    // allow dialling/accepting anything (loopback included)
    connectionGater: {
      denyDialMultiaddr: async () => false,
      denyDialPeer: async () => false,
      denyInboundConnection: async () => false,
      denyOutboundConnection: async () => false,
      denyInboundEncryptedConnection: async () => false,
      denyOutboundEncryptedConnection: async () => false,
      denyInboundUpgradedConnection: async () => false,
      denyOutboundUpgradedConnection: async () => false,
      filterMultiaddrForPeer: async () => true
    },
    services: {
      identify: identify({ maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS }),
      ...services
    }
  })
}

/**
 * Calls `onExit(reason)` once on SIGINT, SIGTERM, or when stdin (a pipe or
 * socket, i.e. a driving process) closes. When stdin is /dev/null or a file it is
 * not watched, so `node server.mjs </dev/null &` keeps running until signalled.
 */
export function exitOn (onExit, { watchStdin = true } = {}) {
  let done = false
  const fire = (reason) => {
    if (done) return
    done = true
    onExit(reason)
  }
  process.on('SIGINT', () => fire('SIGINT'))
  process.on('SIGTERM', () => fire('SIGTERM'))
  if (watchStdin) {
    let st
    try { st = fs.fstatSync(0) } catch { st = null }
    if (st != null && (st.isFIFO() || st.isSocket() || process.stdin.isTTY)) {
      process.stdin.on('end', () => fire('stdin closed'))
      process.stdin.on('close', () => fire('stdin closed'))
      process.stdin.resume()
    }
  }
  return fire
}

/** Stop the node, but never take more than `ms`; then exit. */
export async function shutdown (node, reason, code = 0, ms = 3000) {
  log(`shutting down (${reason})`)
  const timer = setTimeout(() => { log('stop timed out, exiting'); process.exit(code) }, ms)
  timer.unref()
  try { await node?.stop() } catch (err) { log('stop failed:', String(err)) }
  process.exit(code)
}
