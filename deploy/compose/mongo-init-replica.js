// Initiate the one-member MongoDB replica set "rs0" (idempotent), then wait for its primary.
// Run by the mongo-init job in deploy/compose.yaml: mongosh --host mongo:27017 <this file>.
// The replica set name and member address must match `mongod --replSet` and the services'
// CHATPIC_MONGO_URI (mongodb://mongo:27017/?replicaSet=rs0).
const replicaSet = "rs0";
const member = "mongo:27017";

let initiated = true;
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  initiated = false;
}
if (initiated) {
  print(`replica set ${replicaSet} was already initiated`);
} else {
  try {
    rs.initiate({ _id: replicaSet, members: [{ _id: 0, host: member }] });
    print(`replica set ${replicaSet} initiated with ${member}`);
  } catch (e) {
    if (e.codeName !== "AlreadyInitialized") throw e;
  }
}

const deadline = Date.now() + 60 * 1000;
while (!db.hello().isWritablePrimary) {
  if (Date.now() > deadline) throw new Error(`replica set ${replicaSet} has no primary after 60 s`);
  sleep(500);
}
print(`replica set ${replicaSet} has a primary`);
