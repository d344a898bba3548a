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

module.exports = {
  serviceString, hostName, registry, serviceClient, uniqueId, createDevice, openDevice, updateReported, sleep, eventually, assert, expectError,
  serviceKey, keyName, eventHubString, endPositions, subscribe, fromDevice,
};
