'use strict'
// Native handles never keep Node alive (their event callbacks are weak). A listening server and
// a started transport do, like net.Server and net.Socket, until closed or unref()'d.
class KeepAlive {
  constructor() {
    this._timer = setInterval(() => {}, 2 ** 30)
  }
  ref() { this._timer?.ref() }
  unref() { this._timer?.unref() }
  release() {
    if (this._timer) clearInterval(this._timer)
    this._timer = null
  }
}
module.exports = { KeepAlive }
