// A back end reads device telemetry from the hub's built-in Event
// Hubs-compatible endpoint with the official Event Hubs client, as it
// would on Azure with the connection string the portal shows under
// Built-in endpoints; the endpoint is read-only.
'use strict';
const { Message } = require('azure-iot-common');
const { EventHubConsumerClient, EventHubProducerClient } = require('@azure/event-hubs');
const { serviceString, hostName, createDevice, openDevice, uniqueId, eventually, assert, expectError } = require('../lib');

// The Event Hubs-compatible connection string of the iothubowner policy.
function eventHubString() {
  const key = /SharedAccessKey=([^;]+)/.exec(serviceString())[1];
  const host = hostName();
  return `Endpoint=sb://${host}/;SharedAccessKeyName=iothubowner;SharedAccessKey=${key};EntityPath=${host.split('.')[0]}`;
}

exports.readTelemetry = async () => {
  const consumer = new EventHubConsumerClient('$Default', eventHubString());
  const { id, cs } = await createDevice('eh');
  const device = await openDevice(cs);
  let subscription;
  try {
    const props = await consumer.getEventHubProperties();
    assert(props.partitionIds.length === 4 && props.name === hostName().split('.')[0], `properties ${JSON.stringify(props)}`);
    // Start after what each partition holds now.
    const startPosition = {};
    for (const p of props.partitionIds) {
      const info = await consumer.getPartitionProperties(p);
      assert(typeof info.beginningSequenceNumber === 'number' && typeof info.isEmpty === 'boolean', `partition ${JSON.stringify(info)}`);
      startPosition[p] = { sequenceNumber: info.lastEnqueuedSequenceNumber, isInclusive: false };
    }
    const events = [];
    subscription = consumer.subscribe({
      processEvents: async (batch) => { events.push(...batch); },
      processError: async (err) => { events.push({ error: err }); },
    }, { startPosition, maxWaitTimeInSeconds: 1 });
    const msg = new Message(JSON.stringify({ temperature: 21.5 }));
    msg.messageId = uniqueId('m');
    msg.contentType = 'application/json';
    msg.contentEncoding = 'utf-8';
    msg.properties.add('temperatureAlert', 'false');
    await device.sendEvent(msg);
    const ev = await eventually(async () => {
      const err = events.find((e) => e.error);
      assert(!err, `processError: ${err && err.error}`);
      const got = events.find((e) => e.systemProperties && e.systemProperties['iothub-connection-device-id'] === id);
      assert(got, `${events.length} events, none from ${id}`);
      return got;
    }, 20000);
    assert(ev.body && ev.body.temperature === 21.5, `body ${JSON.stringify(ev.body)}`);
    assert(ev.messageId === msg.messageId && ev.contentType === 'application/json', `ids ${ev.messageId} ${ev.contentType}`);
    assert(ev.properties.temperatureAlert === 'false', `properties ${JSON.stringify(ev.properties)}`);
    assert(typeof ev.sequenceNumber === 'number' && ev.enqueuedTimeUtc instanceof Date, `position ${ev.sequenceNumber} ${ev.enqueuedTimeUtc}`);
    assert(ev.systemProperties['iothub-message-source'] === 'Telemetry', `source ${JSON.stringify(ev.systemProperties)}`);
  } finally {
    if (subscription) await subscription.close();
    await consumer.close();
    await device.close();
  }
};

exports.readOnlyEndpoint = async () => {
  const producer = new EventHubProducerClient(eventHubString(), { retryOptions: { maxRetries: 0 } });
  try {
    await expectError(producer.sendBatch([{ body: 'x' }]), (err) => assert(/Send|unauthori/i.test(`${err.code} ${err.message}`), `${err.code} ${err.message}`));
  } finally {
    await producer.close();
  }
};
