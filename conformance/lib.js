// Helpers shared by the scenarios: what any application would write.
'use strict';
const crypto = require('crypto');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const iothub = require('azure-iothub');

const serviceString = () => process.env.IOTHUB_CONNECTION_STRING;
const hostName = () => /HostName=([^;]+)/.exec(serviceString())[1];
const registry = () => iothub.Registry.fromConnectionString(serviceString());
const serviceClient = () => iothub.Client.fromConnectionString(serviceString());

function uniqueId(prefix) {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

// createDevice registers a device and returns its connection string.
async function createDevice(prefix) {
  const id = uniqueId(prefix);
  const res = await registry().create({ deviceId: id });
  const key = res.responseBody.authentication.symmetricKey.primaryKey;
  return { id, cs: `HostName=${hostName()};DeviceId=${id};SharedAccessKey=${key}`, key };
}

async function openDevice(cs, transport = Mqtt, options) {
  const client = DeviceClient.fromConnectionString(cs, transport);
  if (options) await client.setOptions(options);
  await client.open();
  return client;
}

function updateReported(twin, patch) {
  return new Promise((resolve, reject) => twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve())));
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// eventually retries fn until it stops throwing or ms pass.
async function eventually(fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(200);
    }
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

async function expectError(p, check) {
  try {
    await p;
  } catch (err) {
    check(err);
    return err;
  }
  throw new Error('expected an error, got success');
}

// Reading telemetry back through the hub's Event Hubs-compatible endpoint,
// as a back end does.
const serviceKey = () => /SharedAccessKey=([^;]+)/.exec(serviceString())[1];
const keyName = () => /SharedAccessKeyName=([^;]+)/.exec(serviceString())[1];

// The Event Hubs-compatible connection string of the policy.
function eventHubString() {
  const host = hostName();
  return `Endpoint=sb://${host}/;SharedAccessKeyName=${keyName()};SharedAccessKey=${serviceKey()};EntityPath=${host.split('.')[0]}`;
}

// subscribe follows every partition from startPosition and returns the
// events seen so far, and a close.
function subscribe(consumer, startPosition) {
  const events = [];
  const subscription = consumer.subscribe({
    processEvents: async (batch) => { events.push(...batch); },
    processError: async (err) => { events.push({ error: err }); },
  }, { startPosition, maxWaitTimeInSeconds: 1 });
  return { events, close: () => subscription.close() };
}

// endPositions starts after what each partition holds now.
async function endPositions(consumer) {
  const startPosition = {};
  for (const p of await consumer.getPartitionIds()) {
    const info = await consumer.getPartitionProperties(p);
    startPosition[p] = { sequenceNumber: info.lastEnqueuedSequenceNumber, isInclusive: false };
  }
  return startPosition;
}

// fromDevice waits for n events of device id and returns them in order.
function fromDevice(events, id, n) {
  return eventually(async () => {
    const err = events.find((e) => e.error);
    assert(!err, `processError: ${err && err.error}`);
    const got = events.filter((e) => e.systemProperties && e.systemProperties['iothub-connection-device-id'] === id);
    assert(got.length >= n, `${events.length} events, ${got.length} from ${id}`);
    return got;
  }, 20000);
}


// settleOutcomes sends a device "keep" and "drop" with full feedback
// asked; the device abandons the first delivery of "keep" and completes
// the second, and rejects "drop". It checks the feedback (Success and
// Rejected) and returns the device's deliveries. propertyKey reads the
// application property "kind" as the transport's SDK names it.
async function settleOutcomes(transport, prefix, propertyKey) {
  const { Message } = require('azure-iot-common');
  const { Client: DeviceClient } = require('azure-iot-device');
  const { id, cs } = await createDevice(prefix);
  const service = serviceClient();
  const device = DeviceClient.fromConnectionString(cs, transport);
  const seen = [];
  try {
    await service.open();
    const receiver = await new Promise((resolve, reject) => service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r))));
    const feedback = [];
    receiver.on('message', (b) => {
      feedback.push(...JSON.parse(b.getData().toString('utf-8')));
      receiver.complete(b, () => {});
    });
    device.on('message', (msg) => {
      seen.push(msg);
      const body = msg.data.toString();
      const n = seen.filter((m) => m.data && m.data.toString() === body).length;
      const settle = body === 'drop' ? device.reject(msg) : (n === 1 ? device.abandon(msg) : device.complete(msg));
      settle.catch((err) => seen.push({ error: err }));
    });
    await device.open();
    for (const body of ['keep', 'drop']) {
      const m = new Message(body);
      m.messageId = uniqueId(body);
      m.ack = 'full';
      m.properties.add('kind', body);
      await service.send(id, m);
    }
    const records = await eventually(async () => {
      const errors = seen.filter((m) => m.error);
      assert(errors.length === 0, `settling failed: ${errors.map((e) => e.error)}`);
      assert(feedback.length >= 2, `feedback ${JSON.stringify(feedback)}`);
      return feedback;
    }, 20000);
    const status = Object.fromEntries(records.map((r) => [seen.find((m) => m.messageId === r.originalMessageId).data.toString(), r.statusCode]));
    assert(status.keep === 'Success' && status.drop === 'Rejected', `feedback by message ${JSON.stringify(status)}`);
    const keep = seen.filter((m) => m.data && m.data.toString() === 'keep');
    assert(keep.length === 2, `deliveries of keep: ${keep.length}`);
    assert(keep[0].properties.getValue(propertyKey) === 'keep', `application properties ${JSON.stringify(keep[0].properties)}`);
    return seen;
  } finally {
    await device.close();
    await service.close();
  }
}

// selfSignedDevice registers a device with a new self-signed
// certificate and returns its id, certificate and key.
async function selfSignedDevice(prefix) {
  const fs = require('fs');
  const os = require('os');
  const path = require('path');
  const { execFileSync } = require('child_process');
  const id = uniqueId(prefix);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'x509-'));
  try {
    const certFile = path.join(dir, 'cert.pem');
    const keyFile = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', `/CN=${id}`], { stdio: 'ignore' });
    const cert = fs.readFileSync(certFile, 'utf8');
    const der = Buffer.from(cert.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const thumbprint = crypto.createHash('sha1').update(der).digest('hex').toUpperCase();
    await registry().create({ deviceId: id, authentication: { x509Thumbprint: { primaryThumbprint: thumbprint } } });
    return { id, cert, key: fs.readFileSync(keyFile, 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = {
  serviceString, hostName, registry, serviceClient, uniqueId, createDevice, openDevice, updateReported, sleep, eventually, assert, expectError,
  serviceKey, keyName, eventHubString, endPositions, subscribe, fromDevice, settleOutcomes, selfSignedDevice,
};
