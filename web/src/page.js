// The page: a js-libp2p node in a browser tab that connects to the
// rendezvous point given in its URL over WebSocket, WebTransport or
// WebRTC-direct, registers in a namespace, refreshes before its TTL ends,
// discovers the other peers there and unregisters when the tab goes away.
//
// URL parameters: point (a multiaddr ending in /p2p/<id>, required), ns
// (default "browsers"), ttl (seconds asked for, default 60), every (seconds
// between DISCOVERs, default 2).
import { createLibp2p } from 'libp2p'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { webSockets } from '@libp2p/websockets'
import { webTransport } from '@libp2p/webtransport'
import { webRTCDirect } from '@libp2p/webrtc'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { register, unregister, discover, RefusedError } from './rendezvous.js'

const params = new URLSearchParams(location.search)
const ns = params.get('ns') || 'browsers'
const askedTTL = Number(params.get('ttl') || 60)
const every = Number(params.get('every') || 2) * 1000

const $ = (id) => document.getElementById(id)
const state = {
  peerId: '',
  transport: '',
  remoteAddr: '', // of the connection to the point
  phase: 'starting', // starting, connecting, registered, refused, failed, left
  grantedTTL: 0,
  registrations: 0,
  refreshes: 0,
  registeredAt: 0,
  error: '',
  peers: new Map() // peer ID -> {multiaddrs, ttl, firstSeen}
}
window.rendezvousState = state // read by tests

function show () {
  $('self').textContent = state.peerId || '…'
  $('transport').textContent = state.transport || '…'
  $('remote').textContent = state.remoteAddr || '…'
  $('ns').textContent = ns
  $('phase').textContent = state.phase
  document.body.dataset.phase = state.phase
  $('ttl').textContent = state.grantedTTL ? `${state.grantedTTL} s granted (asked ${askedTTL} s)` : `asked ${askedTTL} s`
  $('refreshes').textContent = state.refreshes === 1 ? '1 refresh' : `${state.refreshes} refreshes`
  $('error').textContent = state.error
  $('error').hidden = state.error === ''
  const list = $('peers')
  list.replaceChildren()
  const now = Date.now()
  for (const [id, p] of state.peers) {
    const li = document.createElement('li')
    li.dataset.peer = id
    li.dataset.seenForMs = String(now - p.firstSeen)
    const strong = document.createElement('strong')
    strong.textContent = id
    const small = document.createElement('small')
    small.textContent = ` seen for ${Math.floor((now - p.firstSeen) / 1000)} s, ${p.ttl} s left · ${p.multiaddrs.join(' ')}`
    li.append(strong, small)
    list.append(li)
  }
  $('count').textContent = state.peers.size === 1 ? '1 other peer' : `${state.peers.size} other peers`
  $('empty').hidden = state.peers.size > 0
}

// refreshDelay is when to register again, in ms, for a TTL granted in
// seconds: at 7/8 of it, but at least 3 s before it ends (a hidden tab's
// timers may fire a second late) and no sooner than half of it.
function refreshDelay (ttl) {
  return Math.max(ttl / 2, Math.min(ttl * 7 / 8, ttl - 3)) * 1000
}

function transportOf (ma) {
  const s = ma.toString()
  if (s.includes('/webtransport')) return 'WebTransport'
  if (s.includes('/webrtc-direct')) return 'WebRTC-direct'
  if (s.includes('/wss') || s.includes('/tls/ws')) return 'WebSocket (TLS)'
  if (s.includes('/ws')) return 'WebSocket'
  return 'unknown'
}

async function main () {
  const pointParam = params.get('point')
  if (!pointParam) {
    throw new Error('no point: open this page with ?point=<multiaddr of a rendezvous point>')
  }
  const point = multiaddr(pointParam)
  state.transport = transportOf(point)
  const privateKey = await generateKeyPair('Ed25519')
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: [] },
    transports: [webSockets(), webTransport(), webRTCDirect()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // The point is the one the user gave: dial it even on a private or
    // loopback address, or over plain ws:// to a local one.
    connectionGater: { denyDialMultiaddr: async () => false }
  })
  state.peerId = node.peerId.toString()
  state.phase = 'connecting'
  show()
  const conn = await node.dial(point)
  state.remoteAddr = conn.remoteAddr.toString()

  // A browser tab listens nowhere: it says it is reachable through the point
  // (a circuit-relay address), which is what a relaying point would give it.
  const addrs = () => {
    const own = node.getMultiaddrs()
    return own.length > 0 ? own : [point.encapsulate('/p2p-circuit')]
  }

  let refreshTimer
  const registerOnce = async () => {
    try {
      state.grantedTTL = await register(node, point, privateKey, ns, askedTTL, addrs())
    } catch (err) {
      if (err instanceof RefusedError) {
        state.phase = 'refused'
        state.error = err.message
        show()
        return
      }
      throw err
    }
    if (state.registrations > 0) state.refreshes++
    state.registrations++
    state.registeredAt = Date.now()
    state.phase = 'registered'
    state.error = ''
    show()
    refreshTimer = setTimeout(() => {
      registerOnce().catch(fail)
    }, refreshDelay(state.grantedTTL))
  }
  await registerOnce()

  const look = async () => {
    const found = await discover(node, point, ns, 100)
    const now = Date.now()
    const seen = new Set()
    for (const r of found) {
      const id = r.peerId.toString()
      if (id === state.peerId) continue
      seen.add(id)
      const old = state.peers.get(id)
      state.peers.set(id, { multiaddrs: r.multiaddrs.map(String), ttl: r.ttl, firstSeen: old?.firstSeen ?? now })
    }
    for (const id of state.peers.keys()) {
      if (!seen.has(id)) state.peers.delete(id)
    }
    show()
  }
  const lookTimer = setInterval(() => { look().catch(fail) }, every)
  await look()

  const leave = async () => {
    clearTimeout(refreshTimer)
    clearInterval(lookTimer)
    if (state.phase !== 'registered') return
    state.phase = 'left'
    show()
    await unregister(node, point, ns)
  }
  $('leave').onclick = () => { leave().catch(fail) }
  // Best effort: a closing tab may not get its UNREGISTER out, and the
  // registration then ends with its TTL.
  addEventListener('pagehide', () => { leave().catch(() => {}) })
}

function fail (err) {
  console.error(err)
  if (state.phase !== 'refused') state.phase = 'failed'
  state.error = err?.message ?? String(err)
  show()
}

show()
main().catch(fail)
