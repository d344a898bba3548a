// Device-side features: telemetry, MQTT over WebSocket, close and open,
// SAS token renewal, a CA given in code, a wrong key, and X.509
// certificates, self-signed and CA-signed.
'use strict';
const fs = require('fs');
const { Message } = require('azure-iot-device');
const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
const { createDevice, openDevice, updateReported, serviceClient, registry, sleep, assert, expectError } = require('../lib');

exports.sendEvent = async () => {
  const { cs } = await createDevice('telemetry');
  const device = await openDevice(cs);
  try {
    const msg = new Message(JSON.stringify({ temperature: 21.5 }));
    msg.messageId = 'm-1';
    msg.properties.add('alert', 'high temp');
    await device.sendEvent(msg);
  } finally {
    await device.close();
  }
};

async function roundTrip(device, id) {
  device.onDeviceMethod('ping', (req, res) => res.send(200, 'pong'));
  const { result } = await serviceClient().invokeDeviceMethod(id, { methodName: 'ping', responseTimeoutInSeconds: 10 });
  assert(result.payload === 'pong', JSON.stringify(result));
  const twin = await device.getTwin();
  await updateReported(twin, { at: Date.now() });
}

exports.webSocket = async () => {
  const { id, cs } = await createDevice('ws');
  const device = await openDevice(cs, MqttWs);
  try {
    await roundTrip(device, id);
  } finally {
    await device.close();
  }
};

exports.closeAndOpen = async () => {
  const { id, cs } = await createDevice('reopen');
  const device = await openDevice(cs);
  try {
    await roundTrip(device, id);
    await device.close();
    await device.open();
    const twin = await device.getTwin();
    await updateReported(twin, { reopened: true });
    const { result } = await serviceClient().invokeDeviceMethod(id, { methodName: 'ping', responseTimeoutInSeconds: 10 });
    assert(result.payload === 'pong', 'method after reopen');
  } finally {
    await device.close();
  }
};

exports.tokenRenewal = async () => {
  const { id, cs } = await createDevice('renew');
  const device = await openDevice(cs, Mqtt, { tokenRenewal: { tokenValidTimeInSeconds: 20, tokenRenewalMarginInSeconds: 17 } });
  try {
    await roundTrip(device, id);
    await sleep(7000); // at least one renewal: the SDK reconnects without re-subscribing
    const twin = await device.getTwin();
    await updateReported(twin, { renewed: true });
    const { result } = await serviceClient().invokeDeviceMethod(id, { methodName: 'ping', responseTimeoutInSeconds: 10 });
    assert(result.payload === 'pong', 'method after renewal');
    const { responseBody: after } = await registry().getTwin(id);
    assert(after.properties.reported.renewed === true, 'reported after renewal');
  } finally {
    await device.close();
  }
};

exports.caInCode = async () => {
  const { id, cs } = await createDevice('ca');
  const device = await openDevice(cs, Mqtt, { ca: fs.readFileSync(process.env.NODE_EXTRA_CA_CERTS, 'utf8') });
  try {
    await roundTrip(device, id);
  } finally {
    await device.close();
  }
};

exports.wrongKeyRejected = async () => {
  const { cs, key } = await createDevice('wrongkey');
  const bad = cs.replace(key, Buffer.alloc(32, 7).toString('base64'));
  const { Client } = require('azure-iot-device');
  const device = Client.fromConnectionString(bad, Mqtt);
  await expectError(device.open(), (err) => assert(/UnauthorizedError|Not authorized/i.test(`${err.constructor.name} ${err.message}`), `${err.constructor.name}: ${err.message}`));
};

exports.x509SelfSigned = async () => {
  const { Client } = require('azure-iot-device');
  const { id, cert, key } = await require('../lib').selfSignedDevice('x509');
  const device = Client.fromConnectionString(`HostName=${require('../lib').hostName()};DeviceId=${id};x509=true`, Mqtt);
  device.setOptions({ cert, key });
  await device.open();
  try {
    const twin = await device.getTwin();
    await updateReported(twin, { auth: 'x509' });
    const { responseBody: after } = await registry().getTwin(id);
    assert(after.authenticationType === 'selfSigned' && after.properties.reported.auth === 'x509', JSON.stringify(after));
  } finally {
    await device.close();
  }
};

// A CA-signed device: its certificate is signed by a CA registered with the
// hub (X509_CA_CERT and X509_CA_KEY name it) and names the device in its
// common name.
exports.x509CASigned = async () => {
  if (!process.env.X509_CA_CERT || !process.env.X509_CA_KEY) return 'X509_CA_CERT and X509_CA_KEY name no CA registered with the hub';
  const os = require('os');
  const path = require('path');
  const { execFileSync } = require('child_process');
  const { Client } = require('azure-iot-device');
  const { uniqueId, hostName } = require('../lib');
  const id = uniqueId('x509ca');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'x509ca-'));
  const file = (n) => path.join(dir, n);
  const quiet = { stdio: 'ignore' };
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', file('key.pem'), '-out', file('req.csr'), '-subj', `/CN=${id}`], quiet);
  execFileSync('openssl', ['x509', '-req', '-in', file('req.csr'), '-CA', process.env.X509_CA_CERT,
    '-CAkey', process.env.X509_CA_KEY, '-CAcreateserial', '-CAserial', file('ca.srl'), '-days', '1', '-out', file('cert.pem')], quiet);
  await registry().create({ deviceId: id, authentication: { type: 'certificateAuthority' } });
  const device = Client.fromConnectionString(`HostName=${hostName()};DeviceId=${id};x509=true`, Mqtt);
  device.setOptions({ cert: fs.readFileSync(file('cert.pem'), 'utf8'), key: fs.readFileSync(file('key.pem'), 'utf8') });
  try {
    await device.open();
    const twin = await device.getTwin();
    await updateReported(twin, { auth: 'ca' });
    const { responseBody: after } = await registry().getTwin(id);
    assert(after.authenticationType === 'certificateAuthority' && after.properties.reported.auth === 'ca', JSON.stringify(after));
  } finally {
    await device.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
};
