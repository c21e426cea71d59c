// Starts @firestore-emulator/server on 127.0.0.1 only (its start() binds 0.0.0.0).
// Usage: node launch.js PORT  — prints "listening 127.0.0.1:PORT" once it accepts calls,
// and exits when stdin closes so an abandoned emulator never outlives its test run.
"use strict";
const { FirestoreServer } = require("@firestore-emulator/server");
const { ServerCredentials } = require("@grpc/grpc-js");

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node launch.js PORT (a free TCP port on 127.0.0.1)");
  process.exit(2);
}
const emulator = new FirestoreServer();
// `server` is the emulator's grpc-js Server; binding it ourselves picks the interface.
emulator.server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(`cannot bind 127.0.0.1:${port}: ${err.message}`);
    process.exit(1);
  }
  console.log(`listening 127.0.0.1:${port}`);
});
const stop = () => {
  emulator.stop();
  process.exit(0);
};
process.stdin.on("end", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
