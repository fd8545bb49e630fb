#!/usr/bin/env node
// Smoke test: js client.mjs -> js server.mjs (canvas <-> canvas) over 127.0.0.1.
// Also records the canvas implementation's quirks. Bounded: every call has a
// timeout, the whole run is killed after GLOBAL_TIMEOUT_MS, and every child
// process is stopped on exit.
//
//   node smoke.mjs [--many N]      (N in-process peers for the limit/paging test, default 70)
//
// Prints one line per check and ends with "N passed, N failed".
import './polyfill.mjs'
import { spawn } from 'node:child_process'
import readline from 'node:readline'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { rendezvousClient, RendezvousClient } from '@canvas-js/libp2p-rendezvous/client'
import { multiaddr } from '@multiformats/multiaddr'
import { makeNode, parseArgs } from './common.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const args = parseArgs(process.argv.slice(2))
const MANY = Math.min(Number(args.many ?? 70), 300)
const GLOBAL_TIMEOUT_MS = 240_000
const CALL_TIMEOUT_MS = 20_000

const children = []
let passed = 0
let failed = 0
const notes = []

function check (name, cond, detail) {
  if (cond) passed++
  else failed++
  console.log(`${cond ? 'PASS' : 'FAIL'} ${name}${detail !== undefined ? ' :: ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)) : ''}`)
}
function note (s) { notes.push(s); console.log(`NOTE ${s}`) }

class Proc {
  constructor (name, script, argv) {
    this.name = name
    this.proc = spawn(process.execPath, [path.join(here, script), ...argv], { stdio: ['pipe', 'pipe', 'pipe'] })
    children.push(this.proc)
    this.lines = []
    this.waiters = []
    this.stderr = ''
    this.proc.stderr.on('data', d => { this.stderr += d; if (this.stderr.length > 200_000) this.stderr = this.stderr.slice(-100_000) })
    readline.createInterface({ input: this.proc.stdout }).on('line', (l) => {
      const w = this.waiters.shift()
      if (w) w(l)
      else this.lines.push(l)
    })
    this.exited = new Promise(resolve => this.proc.on('exit', (code, signal) => resolve({ code, signal })))
  }

  nextLine (ms = CALL_TIMEOUT_MS) {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift())
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(new Error(`${this.name}: no output within ${ms} ms; stderr tail: ${this.stderr.slice(-2000)}`))
      }, ms)
      const w = (l) => { clearTimeout(t); resolve(l) }
      this.waiters.push(w)
    })
  }

  async call (cmd, ms) {
    this.proc.stdin.write(JSON.stringify(cmd) + '\n')
    return JSON.parse(await this.nextLine(ms))
  }
}

const globalTimer = setTimeout(() => {
  console.log('FAIL global timeout')
  for (const c of children) c.kill('SIGKILL')
  process.exit(1)
}, GLOBAL_TIMEOUT_MS)

const inproc = []

async function main () {
  // ---- server: spec ID + canvas alias
  const server = new Proc('server', 'server.mjs', ['--protocol', '/rendezvous/1.0.0', '--protocol', '/canvas/rendezvous/1.0.0'])
  const ready = JSON.parse(await server.nextLine())
  check('server ready line', /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW\w+$/.test(ready.multiaddr) && Object.keys(ready).length === 1, ready)
  const srv = ready.multiaddr

  const A = new Proc('A', 'client.mjs', [])
  const B = new Proc('B', 'client.mjs', [])
  const idA = await A.call({ op: 'id' })
  const idB = await B.call({ op: 'id' })
  check('id', idA.ok && idB.ok && idA.peerId !== idB.peerId, { A: idA.peerId, B: idB.peerId })

  let r = await A.call({ op: 'connect', multiaddr: srv, tag: 1 })
  check('A connect (identify lists both IDs)', r.ok && r.tag === 1 && r.protocols?.includes('/rendezvous/1.0.0') && r.protocols?.includes('/canvas/rendezvous/1.0.0'), r)
  r = await B.call({ op: 'connect', multiaddr: srv })
  check('B connect', r.ok, r)

  // ---- TTL behaviour
  r = await A.call({ op: 'register', ns: 'smoke', ttl: 7200 })
  check('register ttl 7200 -> 7200', r.ok && r.ttl === 7200, r)
  r = await A.call({ op: 'register', ns: 'smoke', ttl: 100000 })
  check('register ttl 100000 -> clamped 7200 (no E_INVALID_TTL)', r.ok && r.ttl === 7200, r)
  r = await A.call({ op: 'register', ns: 'smoke' })
  check('register without ttl -> 7200', r.ok && r.ttl === 7200, r)
  r = await A.call({ op: 'register', ns: 'smoke-short', ttl: 1 })
  check('register ttl 1 -> 1 (no minimum)', r.ok && r.ttl === 1, r)

  // ---- discover
  r = await B.call({ op: 'discover', ns: 'smoke', limit: 10 })
  check('B discovers A', r.ok && r.count === 1 && r.registrations[0].peerId === idA.peerId &&
    r.registrations[0].ns === 'smoke' && r.registrations[0].multiaddrs.length > 0, r)
  r = await A.call({ op: 'discover', ns: 'smoke' })
  check('A discovering itself gets nothing (canvas client skips self)', r.ok && r.count === 0, r)
  r = await B.call({ op: 'discover', ns: 'nobody-here' })
  check('unknown namespace -> OK, empty', r.ok && r.count === 0, r)

  r = await B.call({ op: 'raw', requests: [{ type: 'DISCOVER', ns: 'smoke', limit: 10 }] })
  const d0 = r.responses?.[0]
  check('raw discover: remaining ttl, 8-byte cookie', r.ok && d0.type === 'DISCOVER_RESPONSE' && d0.status === 'OK' &&
    d0.registrations[0].ttl > 7100 && d0.registrations[0].ttl <= 7200 && d0.cookie.length === 16, d0)
  r = await B.call({ op: 'raw', requests: [{ type: 'DISCOVER', ns: '' }] })
  check('raw discover with ns absent -> OK, empty (literal "" namespace, not all)', r.ok && r.responses[0].count === 0, r)

  await new Promise(resolve => setTimeout(resolve, 2500))
  r = await B.call({ op: 'discover', ns: 'smoke-short' })
  check('ttl 1 registration gone after 2.5 s', r.ok && r.count === 0, r)

  // ---- errors reset the stream (no status code)
  r = await B.call({ op: 'raw', requests: [{ type: 'DISCOVER', ns: 'smoke', cookie: 'abcdef' }] })
  check('bad cookie -> stream reset, no status', !r.ok && r.responses.length === 0, r)
  r = await B.call({ op: 'raw', requests: [{ type: 'DISCOVER', ns: 'x'.repeat(300) }] })
  check('ns of 300 chars -> stream reset, no E_INVALID_NAMESPACE', !r.ok && r.responses.length === 0, r)
  r = await B.call({ op: 'raw', requests: [{ type: 'DISCOVER', ns: 'x'.repeat(255) }, { type: 'DISCOVER', ns: 'é'.repeat(200) }] })
  check('ns limit counts UTF-16 units, not bytes: 255 ASCII and 200 "é" (400 bytes) accepted', r.ok && r.responses.length === 2, r)
  r = await B.call({ op: 'raw', requests: [{ type: 'DISCOVER', ns: 'x'.repeat(256) }] })
  check('ns of 256 ASCII -> reset', !r.ok, r)
  r = await B.call({ op: 'discover', ns: 'smoke' })
  check('connection still usable after resets', r.ok && r.count === 1, r)

  // ---- record signed by another key
  r = await B.call({ op: 'raw', requests: [{ type: 'REGISTER', ns: 'foreign', ttl: 60, signer: 'random' }, { type: 'DISCOVER', ns: 'foreign' }] })
  if (r.ok && r.responses[0].status === 'OK') {
    const reg = r.responses[1]?.registrations?.[0]
    note(`canvas server ACCEPTS a REGISTER whose record is signed by another peer (consumePeerRecord's false is ignored); discover serves it: signer=${reg?.signer} B=${idB.peerId}`)
  } else {
    note(`canvas server rejected a foreign-signed record: ${JSON.stringify(r)}`)
  }
  check('foreign-signed register observed', true)

  // ---- one stream, several requests
  r = await A.call({ op: 'pipeline', requests: [
    { op: 'register', ns: 'pipe', ttl: 300 },
    { op: 'discover', ns: 'pipe' },
    { op: 'register', ns: 'pipe2', ttl: 60 },
    { op: 'unregister', ns: 'pipe2' }
  ], holdMs: 200 })
  check('pipeline (sequential) on one stream', r.ok && r.results[0].ttl === 300 && r.results[1].count === 0 && r.results[2].ttl === 60, r)
  r = await B.call({ op: 'pipeline', concurrent: true, requests: [
    { op: 'discover', ns: 'pipe' },
    { op: 'register', ns: 'pipe', ttl: 120 },
    { op: 'discover', ns: 'smoke' }
  ] })
  check('pipeline (concurrent) on one stream', r.ok && r.results[0].count === 1 && r.results[1].ttl === 120 && r.results[2].count === 1, r)
  r = await B.call({ op: 'raw', requests: [
    { type: 'REGISTER', ns: 'rawpipe', ttl: 30 },
    { type: 'DISCOVER', ns: 'pipe' },
    { type: 'UNREGISTER', ns: 'rawpipe' },
    { type: 'DISCOVER', ns: 'rawpipe' }
  ] })
  check('raw pipeline: 3 responses in order, UNREGISTER unanswered and applied', r.ok && r.responses.length === 3 &&
    r.responses[0].ttl === 30 && r.responses[1].count === 2 && r.responses[2].count === 0, r)

  // ---- unregister: is the trailing UNREGISTER cut off when canvas closes the stream?
  const ROUNDS = 10
  let lost = 0
  for (let i = 0; i < ROUNDS; i++) {
    await A.call({ op: 'register', ns: `unreg${i}`, ttl: 600 })
    await A.call({ op: 'unregister', ns: `unreg${i}` })
    const d = await B.call({ op: 'discover', ns: `unreg${i}` })
    if (d.count !== 0) lost++
  }
  note(`canvas unregister alone on its stream (holdMs 0): ${lost}/${ROUNDS} lost (closeWrite aborts the unsent pushable)`)
  check('unregister without hold/flush observed', true, { lost, ROUNDS })
  await A.call({ op: 'register', ns: 'unreg-flush', ttl: 600 })
  r = await A.call({ op: 'unregister', ns: 'unreg-flush', flush: true })
  const afterFlush = await B.call({ op: 'discover', ns: 'unreg-flush' })
  check('unregister with flush (DISCOVER after it on the same stream) applied', r.ok && afterFlush.count === 0, afterFlush)
  r = await A.call({ op: 'unregister', ns: 'smoke', holdMs: 200 })
  const after = await B.call({ op: 'discover', ns: 'smoke' })
  check('unregister with holdMs 200 applied', r.ok && after.count === 0, after)

  // ---- alias protocol ID: a canvas-default client
  const C = new Proc('C', 'client.mjs', ['--protocol', '/canvas/rendezvous/1.0.0'])
  r = await C.call({ op: 'discover', ns: 'pipe', multiaddr: srv })
  check('client on /canvas/rendezvous/1.0.0 served by alias', r.ok && r.count === 2, r)
  r = await C.call({ op: 'quit' })
  check('C quit', r.ok && (await C.exited).code === 0)

  // ---- many peers: discover limit cap and cookie paging
  RendezvousClient.protocol = '/rendezvous/1.0.0'
  const t0 = Date.now()
  const settled = await Promise.allSettled(Array.from({ length: MANY }, async () => {
    const n = await makeNode({ listen: ['/ip4/127.0.0.1/tcp/0'], services: { rendezvous: rendezvousClient({ autoDiscover: false }) } })
    inproc.push(n)
    return await n.services.rendezvous.connect(multiaddr(srv), (p) => p.register('many', { ttl: 600 }))
  }))
  const okCount = settled.filter(s => s.status === 'fulfilled').length
  check(`${MANY} in-process peers register concurrently over loopback`, okCount === MANY,
    { ok: okCount, ms: Date.now() - t0, firstError: settled.find(s => s.status === 'rejected')?.reason?.message })
  r = await B.call({ op: 'discover', ns: 'many', limit: 1000 })
  check('discover limit 1000 -> capped at 64', r.ok && r.count === Math.min(64, okCount), { count: r.count })
  r = await B.call({ op: 'discover', ns: 'many' })
  check('discover without limit -> 64', r.ok && r.count === Math.min(64, okCount), { count: r.count })

  // paging with cookies (raw): collect distinct peers over pages of 10
  const seen = new Map()
  let cookie = ''
  const pages = []
  for (let i = 0; i < 12; i++) {
    r = await B.call({ op: 'raw', requests: [{ type: 'DISCOVER', ns: 'many', limit: 10, cookie }] })
    if (!r.ok) break
    const resp = r.responses[0]
    pages.push({ n: resp.count, cookie: resp.cookie })
    for (const reg of resp.registrations) seen.set(reg.peerId, (seen.get(reg.peerId) ?? 0) + 1)
    if (resp.count === 0 || resp.cookie === cookie) break
    cookie = resp.cookie
  }
  const repeats = [...seen.values()].filter(v => v > 1).length
  note(`cookie paging (limit 10, ${okCount} regs): ${pages.length} pages, ${seen.size} distinct peers, ${repeats} seen more than once; pages=${JSON.stringify(pages)}`)
  check('cookie paging observed', pages.length > 0)

  await Promise.allSettled(inproc.map(n => n.stop()))

  // ---- quit / shutdown
  r = await A.call({ op: 'quit' })
  check('A quit', r.ok && (await A.exited).code === 0)
  B.proc.stdin.end()
  check('B exits when stdin closes', (await B.exited).code === 0)
  server.proc.kill('SIGTERM')
  const se = await server.exited
  check('server exits on SIGTERM', se.code === 0, se)
}

try {
  await main()
} catch (err) {
  check('smoke run', false, err?.stack ?? String(err))
} finally {
  await Promise.allSettled(inproc.map(n => n.stop()))
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  clearTimeout(globalTimer)
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed === 0 ? 0 : 1)
}
