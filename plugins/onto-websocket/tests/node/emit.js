// Emits each case's event with an ack over one socket.io-client connection, one at a
// time, and prints {name: [ack arguments] or "no ack"} as JSON.
// usage: node emit.js URL '[{"name": ..., "event": ..., "args": [...]}]'
const { io } = require("socket.io-client");

const [url, casesJson] = process.argv.slice(2);
const cases = JSON.parse(casesJson);
const ACK_WAIT_MS = 3000;

const socket = io(url, { transports: ["websocket"], reconnection: false });
socket.on("connect_error", (error) => {
  console.error(`cannot connect to ${url}: ${error.message}`);
  process.exit(2);
});
socket.on("connect", async () => {
  const answers = {};
  for (const { name, event, args } of cases) {
    answers[name] = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve("no ack"), ACK_WAIT_MS);
      socket.emit(event, ...args, (...reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }
  process.stdout.write(JSON.stringify(answers) + "\n");
  socket.close();
});
