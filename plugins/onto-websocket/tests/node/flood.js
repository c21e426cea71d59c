// Floods a server with subscribe/unsubscribe events from several socket.io-client
// connections without waiting for acks. Prints one JSON line per stage:
// {"connected": n}, {"first_ack": status} once the server answers, then, when every
// event is acked or after DEADLINE_MS, {"sent": n, "acked": n, "statuses": {status: n}}.
// usage: node flood.js URL CONNECTIONS EVENTS_PER_CONNECTION VIEW KEY
const { io } = require("socket.io-client");

const [url, connections, perConnection, view, key] = process.argv.slice(2);
const DEADLINE_MS = 60000;
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

function connect() {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ["websocket"], reconnection: false });
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", reject);
  });
}

async function main() {
  const sockets = await Promise.all(Array.from({ length: Number(connections) }, connect));
  print({ connected: sockets.length });
  const sent = sockets.length * Number(perConnection);
  const statuses = {};
  let acked = 0;
  const finish = () => {
    print({ sent, acked, statuses });
    sockets.forEach((socket) => socket.close());
    process.exit(0);
  };
  setTimeout(finish, DEADLINE_MS);
  for (let i = 0; i < Number(perConnection); i++) {
    for (const socket of sockets) {
      const event = i % 2 === 0 ? "subscribe" : "unsubscribe";
      socket.emit(event, { view, key }, (reply) => {
        const status = reply && reply.ok ? 200 : reply && reply.status;
        if (acked === 0) print({ first_ack: status });
        statuses[status] = (statuses[status] || 0) + 1;
        acked += 1;
        if (acked === sent) finish();
      });
    }
  }
}

main().catch((error) => {
  console.error(`flood failed: ${error.message}`);
  process.exit(2);
});
