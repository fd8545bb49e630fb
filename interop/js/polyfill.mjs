// Must be the FIRST import of every entry script.
// js-libp2p 2.x (via it-queue, mortice, abort-error, ...) calls Promise.withResolvers,
// which Node 20 lacks (added in Node 22).
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve
      let reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
