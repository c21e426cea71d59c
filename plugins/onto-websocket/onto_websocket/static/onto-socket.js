/*
 * onto-socket.js: a small Socket.IO client for browsers, served by onto-websocket at
 * /onto/socket.js. It speaks Socket.IO protocol v5 over Engine.IO v4 on a plain
 * WebSocket (no long-polling, no binary packets, default namespace only), which is all
 * onto's websocket components need.
 *
 *   const socket = new OntoSocket({ auth: { token: "..." } });   // same origin by default
 *   socket.on("connect", () => socket.request("subscribe", { view, key }));
 *   socket.on("view", (envelope) => render(envelope));
 *   const answer = await socket.request("action", { view, key, action, arguments });
 *
 * Events a page may listen to: "connect", "disconnect" (reason), "connect_error" (error,
 * whose .message says why the server refused), and any event the server emits. After a
 * dropped connection it reconnects with a growing delay and fires "connect" again, so
 * subscribe in the "connect" handler. A refused connection (bad token) is not retried.
 */
(function (global) {
  "use strict";

  // Engine.IO v4 packet types: the first character of each WebSocket text frame.
  const EIO_OPEN = "0";
  const EIO_CLOSE = "1";
  const EIO_PING = "2";
  const EIO_PONG = "3";
  const EIO_MESSAGE = "4";
  // Socket.IO v5 packet types: the first character after an Engine.IO message's "4".
  const SIO_CONNECT = "0";
  const SIO_DISCONNECT = "1";
  const SIO_EVENT = "2";
  const SIO_ACK = "3";
  const SIO_CONNECT_ERROR = "4";

  /** The WebSocket URL of the Engine.IO endpoint at `base` (an http(s) URL or origin). */
  function socketUrl(base, path) {
    const url = new URL(path || "/socket.io/", base || global.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "?EIO=4&transport=websocket";
    return url.toString();
  }

  /**
   * A Socket.IO packet's parts: type, ack id (a number, or null) and JSON payload.
   * Layout: <type>[/namespace,][<ack id digits>][<JSON>].
   */
  function parsePacket(text) {
    const type = text.charAt(0);
    let rest = text.slice(1);
    if (rest.charAt(0) === "/") {
      const comma = rest.indexOf(",");
      rest = comma === -1 ? "" : rest.slice(comma + 1);
    }
    const digits = /^\d+/.exec(rest);
    const id = digits ? Number(digits[0]) : null;
    if (digits) rest = rest.slice(digits[0].length);
    return { type, id, data: rest ? JSON.parse(rest) : null };
  }

  class OntoSocket {
    /**
     * options.url: the server (default: this page's origin); options.path: the
     * Socket.IO path (default "/socket.io/"); options.auth: the connect payload, e.g.
     * { token }; options.reconnect: false to stay disconnected after a drop.
     */
    constructor(options) {
      const settings = options || {};
      this.url = socketUrl(settings.url, settings.path);
      this.auth = settings.auth || null;
      this.reconnect = settings.reconnect !== false;
      this.connected = false;
      this.handlers = new Map();
      this.pending = new Map(); // ack id -> callback(args, error)
      this.outbox = []; // packets emitted before the connection was up
      this.nextId = 0;
      this.delay = 500;
      this.ws = null;
      this.watchdog = null;
      this.retry = null;
      this.stopped = false;
      this.open();
    }

    /** Call `handler(...args)` for every `event`; returns this socket. */
    on(event, handler) {
      if (!this.handlers.has(event)) this.handlers.set(event, []);
      this.handlers.get(event).push(handler);
      return this;
    }

    /** Stop calling `handler` for `event`. */
    off(event, handler) {
      const list = this.handlers.get(event) || [];
      this.handlers.set(event, list.filter((h) => h !== handler));
      return this;
    }

    /**
     * Send `event` with `data`. With `ack`, the server's acknowledgement arrives as
     * ack(payload), or ack(undefined, error) if the connection drops first. Emitted
     * while disconnected, the packet waits and goes out once connected.
     */
    emit(event, data, ack) {
      let id = "";
      if (typeof ack === "function") {
        id = String(this.nextId++);
        this.pending.set(Number(id), (args, error) => ack(args ? args[0] : undefined, error));
      }
      const packet = EIO_MESSAGE + SIO_EVENT + id + JSON.stringify([event, data]);
      if (this.connected) this.ws.send(packet);
      else this.outbox.push(packet);
      return this;
    }

    /** `emit` with an ack as a Promise, rejected after `timeoutMs` or on a drop. */
    request(event, data, timeoutMs) {
      const limit = timeoutMs || 10000;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no answer to ${event} within ${limit} ms`)),
          limit
        );
        this.emit(event, data, (payload, error) => {
          clearTimeout(timer);
          if (error) reject(error);
          else resolve(payload);
        });
      });
    }

    /** Disconnect for good (no reconnection). */
    close() {
      this.stopped = true;
      clearTimeout(this.retry);
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(EIO_MESSAGE + SIO_DISCONNECT);
        this.ws.send(EIO_CLOSE);
      }
      if (this.ws) this.ws.close();
    }

    // --- internals ---------------------------------------------------------------

    fire(event, args) {
      for (const handler of this.handlers.get(event) || []) {
        try {
          handler(...args);
        } catch (error) {
          // One failing listener must not stop the others or the socket.
          setTimeout(() => {
            throw error;
          });
        }
      }
    }

    open() {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onmessage = (message) => this.receive(String(message.data));
      ws.onclose = () => this.dropped("transport close");
    }

    send(text) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    }

    /** Expect a ping within interval + timeout, or count the connection as lost. */
    armWatchdog() {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => this.ws.close(), this.pingInterval + this.pingTimeout);
    }

    receive(text) {
      const type = text.charAt(0);
      if (type === EIO_OPEN) {
        const handshake = JSON.parse(text.slice(1));
        this.pingInterval = handshake.pingInterval;
        this.pingTimeout = handshake.pingTimeout;
        this.armWatchdog();
        const auth = this.auth ? JSON.stringify(this.auth) : "";
        this.send(EIO_MESSAGE + SIO_CONNECT + auth);
      } else if (type === EIO_PING) {
        this.armWatchdog();
        this.send(EIO_PONG);
      } else if (type === EIO_CLOSE) {
        this.ws.close();
      } else if (type === EIO_MESSAGE) {
        this.receivePacket(parsePacket(text.slice(1)));
      }
    }

    receivePacket(packet) {
      if (packet.type === SIO_CONNECT) {
        this.connected = true;
        this.delay = 500;
        const queued = this.outbox.splice(0);
        for (const text of queued) this.ws.send(text);
        this.fire("connect", []);
      } else if (packet.type === SIO_CONNECT_ERROR) {
        // The server refused us (e.g. a missing or wrong token): retrying cannot help.
        this.stopped = true;
        const reason = (packet.data && packet.data.message) || "connection refused";
        this.fire("connect_error", [new Error(reason)]);
        this.ws.close();
      } else if (packet.type === SIO_DISCONNECT) {
        this.stopped = true; // the server ended the session on purpose
        this.ws.close();
      } else if (packet.type === SIO_EVENT) {
        const [event, ...args] = packet.data;
        if (packet.id !== null) {
          // The server asked for an acknowledgement: answer once the listeners ran.
          this.fire(event, args);
          this.send(EIO_MESSAGE + SIO_ACK + packet.id + "[]");
        } else {
          this.fire(event, args);
        }
      } else if (packet.type === SIO_ACK) {
        const callback = this.pending.get(packet.id);
        this.pending.delete(packet.id);
        if (callback) callback(packet.data || [], null);
      }
    }

    dropped(reason) {
      clearTimeout(this.watchdog);
      const wasConnected = this.connected;
      this.connected = false;
      const waiting = [...this.pending.values()];
      this.pending.clear();
      for (const callback of waiting) callback(null, new Error(`disconnected: ${reason}`));
      if (wasConnected) this.fire("disconnect", [reason]);
      if (this.stopped || !this.reconnect) return;
      this.retry = setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    }
  }

  global.OntoSocket = OntoSocket;
})(typeof window !== "undefined" ? window : globalThis);
